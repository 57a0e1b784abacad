"""The protocol of one run: evaluate on every task's test set before training and after every experience (after
the whole stream for a one-shot strategy such as joint training); each evaluation is one row of R."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvaluationLog:
    """Rows of R (`scores`), the held-out losses and other metrics, per evaluation point ('init', 'after_exp<i>' or
    'after_joint'), and the wall seconds of each evaluation."""

    task_names: list[str]
    scores: list[tuple[str, list[float]]] = field(default_factory=list)
    losses: list[tuple[str, list[float]]] = field(default_factory=list)
    extras: list[tuple[str, list[dict]]] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    @property
    def R(self) -> np.ndarray:
        """Rows after training (the 'init' row excluded) × tasks."""
        return np.array([r for _, r in self.scores[1:]])

    @property
    def untrained(self) -> list[float]:
        return self.scores[0][1]

    def extra_scores(self) -> dict | None:
        return {label: dict(zip(self.task_names, e, strict=True)) for label, e in self.extras} or None


def evaluate(strategy, test_stream, collector, label: str, log: EvaluationLog, tracker) -> None:
    """One row: `strategy.eval` over every task's test experience; `collector` is the run's
    PrimaryScoreCollector (benchmark/harness/harness_plugins.py)."""
    t0 = time.perf_counter()
    strategy.eval(test_stream)
    log.wall_s.append(time.perf_counter() - t0)
    n = len(log.task_names)
    log.scores.append((label, [collector.scores[j] for j in range(n)]))
    log.losses.append((label, [collector.losses[j] for j in range(n)]))
    if collector.extras:
        log.extras.append((label, [collector.extras.get(j, {}) for j in range(n)]))
    tracker.log_eval(len(log.scores) - 2, log.task_names, log.scores[-1][1], log.losses[-1][1])


def train_and_evaluate(strategy, scenario, collector, tracker, one_shot: bool, say,
                       resumed: EvaluationLog | None = None, after_row=None) -> EvaluationLog:
    """Evaluate untrained, then train experience by experience (or the whole stream at once) and evaluate after
    each; → the log of every row. `resumed`: the rows of a checkpoint (benchmark/harness/checkpoint.py), whose
    experiences are not trained again; `after_row(i, log)`: called after experience i's row (the checkpoint)."""
    log = resumed or EvaluationLog([s.name for s in collector.specs])
    if resumed is None:
        collector.trained_upto = None  # class-IL: before training (and after joint training) every class counts
        evaluate(strategy, scenario.test_stream, collector, "init", log, tracker)
    if one_shot:
        strategy.train(scenario.train_stream)
        evaluate(strategy, scenario.test_stream, collector, "after_joint", log, tracker)
        return log
    for i, experience in enumerate(scenario.train_stream):
        if i < len(log.scores) - 1:  # trained before the checkpoint
            continue
        strategy.train(experience)
        collector.trained_upto = i  # class-IL: the classes of experiences 0..i
        evaluate(strategy, scenario.test_stream, collector, f"after_exp{i}", log, tracker)
        say(f"R[{i}] = " + " ".join(f"{v:.3f}" for v in log.scores[-1][1]))
        if after_row is not None:
            after_row(i, log)
    return log
