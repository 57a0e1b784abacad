"""One trial: a continual run with the trial's arguments on the stream's validation split (`--<stream>.eval-split
val`: held-out training images; the test images are never read), reporting the objective after every experience
so that a scheduler can stop a hopeless trial after task 1 or 2.

Objectives, over the tasks seen so far (R's first k rows and columns after experience k; every task after joint
training): `acc` = their mean accuracy now; `acc-bwt` = that plus BWT over them (BWT ≤ 0 when the model forgets,
so forgetting costs the objective what it costs the tasks; 0 before a second task)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
from avalanche.core import SupervisedPlugin

from benchmark.errors import UserError
from benchmark.harness.harness_plugins import PrimaryScoreCollector
from benchmark.runtime.state import Stateful


def objective_value(rows: list[list[float]], objective: str, seen: list[int], baseline: bool = False) -> float:
    """rows: R's rows so far (one per trained experience); seen: how many tasks each row had seen. A single-task
    baseline (a model per task) scores R's diagonal, as its ACC does; it has no BWT."""
    k = seen[-1]
    if baseline:
        return float(np.mean([rows[j][j] for j in range(len(rows))]))
    acc = float(np.mean(rows[-1][:k]))
    if objective == "acc" or len(rows) < 2:
        return acc
    bwt = float(np.mean([rows[-1][j] - rows[j][j] for j in range(min(k, len(rows)) - 1)]))
    return acc + bwt


class StopTrial(Exception):
    """Raised by a report callback: the scheduler stopped this trial (its run ends there, its folder unwritten)."""


class ReportAfterExperience(Stateful, SupervisedPlugin):
    """After each evaluation that follows training: report(experiences trained, objective, R's row)."""

    state_attrs = ("trained", "rows", "seen")
    rebuilt_attrs = ("report", "objective", "one_shot", "baseline", "last")

    def __init__(self, report: Callable[[int, float, list[float]], None], objective: str, one_shot: bool,
                 horizon: int, baseline: bool = False):
        # a trial resumed from its checkpoint reports from the next experience on (Ray Tune keeps the earlier ones)
        super().__init__()
        self.report, self.objective, self.one_shot, self.baseline = report, objective, one_shot, baseline
        self.last = 1 if one_shot else horizon  # the final row is reported by run_trial, once the run is written
        self.trained, self.rows, self.seen = 0, [], []

    def after_training(self, strategy, **kwargs):
        self.trained += 1

    def after_eval(self, strategy, **kwargs):
        if not self.trained:  # the untrained model's row
            return
        collector = next(p for p in strategy.plugins if isinstance(p, PrimaryScoreCollector))
        self.add_row([collector.scores[j] for j in range(len(collector.specs))])

    def add_row(self, row: list[float], final_too: bool = False) -> None:
        self.rows.append(row)
        self.seen.append(len(row) if self.one_shot else min(self.trained, len(row)))
        if len(self.rows) < self.last or final_too:
            self.report(len(self.rows), self.score(), row)

    def score(self) -> float:
        return objective_value(self.rows, self.objective, self.seen, self.baseline)


def trial_argv(profile: str, strategy: str, stream: str, seed: int, params: dict, out_dir: Path,
               run_args: list[str], group: str) -> list[str]:
    """The `hatswap run` flags of one trial: the profile, its validation split, the trial's arguments."""
    knobs = [a for k, v in params.items() for a in (f"--{k}", _flag_value(v))]
    return ["--profile", profile, "--stream", stream, "--strategy", strategy, "--seed", str(seed),
            f"--{stream}.eval_split", "val", "--out-dir", str(out_dir), "--wandb-group", group, *run_args, *knobs]


def _flag_value(v) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def check_stream_has_val(stream: str) -> None:
    from benchmark.registry import STREAMS

    cls = STREAMS.get(stream).config_cls
    if cls is None or "eval_split" not in {f.name for f in fields(cls)}:
        raise UserError(f"stream {stream} has no validation split (--{stream}.eval-split val), so it cannot be "
                        f"tuned without reading its test images")


def run_trial(argv: list[str], report: Callable[[int, float, list[float]], None], objective: str,
              horizon: int, extra_plugins=()) -> dict:
    """Train the run `argv` describes, reporting after every experience; → its validation result. The run's log
    lines go to trial.log in its --out-dir. A run folder that already holds this trial's results (a search resumed
    after a kill) is read back, its rows reported."""
    from benchmark.config import parse_config
    from benchmark.harness.run import run
    from benchmark.registry import STRATEGIES

    cfg, _ = parse_config(argv)
    if getattr(cfg.stream_args, "eval_split", "test") != "val":
        raise UserError("a trial must evaluate on the validation split")  # never the test images
    meta = STRATEGIES.get(cfg.strategy).meta
    plugin = ReportAfterExperience(report, objective, meta.one_shot, horizon, meta.baseline)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(cfg.out_dir) / "trial.log", "a") as log, contextlib.redirect_stderr(log):  # the run's own lines
        folder, status = run(cfg, extra_plugins=[plugin, *extra_plugins])
    summary = json.loads((folder / "summary.json").read_text())
    if status == "skipped":  # done before: report its rows as they were
        for row in list(summary["eval_score"].values())[1:]:
            plugin.trained += 1
            plugin.add_row(row, final_too=True)
    else:  # the final row, now that the run's folder is written (a scheduler stops a trial at its last report)
        report(len(plugin.rows), plugin.score(), plugin.rows[-1])
    return {"score": plugin.score(), "acc": summary["acc"], "bwt": summary["bwt"], "rows": plugin.rows,
            "folder": str(folder), "seconds": summary["total_wall_s"]}
