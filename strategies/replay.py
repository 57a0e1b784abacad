"""Experience replay: a memory of `mem_size` samples, split evenly over the tasks seen so far (random exemplars per
task; in class- and domain-IL, where every experience has task label 0, over the experiences), and every training
mini-batch is joined by `batch_size_mem` samples drawn from it. Replayed samples keep their task label, so each is
routed to — and trains — its own task's head. The exemplars are drawn from replay's own generator (Avalanche's
RandomExemplarsSelectionStrategy shuffles with Python's global `random`), the memory batches' order from the
harness's memory-order generator (benchmark/runtime/randomness.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import ParametricBuffer, RandomExemplarsSelectionStrategy

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import own_generator
from benchmark.tuning.space import Choice, searchable


@dataclass(frozen=True)
class ReplayConfig:
    mem_size: int = 500  # total samples kept, balanced over past tasks
    batch_size_mem: int = field(default=0, metadata=searchable(Choice(  # replayed per batch; 0 = --batch-size
        (16, 32, 64, 128), source="at a fixed memory (mem_size), Mammoth's ER grid tunes the replayed batch size "
        "beside the lr (Buzzega et al. 2020)")))

    def __post_init__(self):
        if self.mem_size < 1 or self.batch_size_mem < 0:
            raise UserError(f"--replay.mem-size must be ≥ 1 and --replay.batch-size-mem ≥ 0 "
                            f"(got {self.mem_size}, {self.batch_size_mem})")


class OwnRandomExemplars(RandomExemplarsSelectionStrategy):
    """Exemplars in a random order drawn from replay's own generator."""

    def make_sorted_indices(self, strategy, data) -> list[int]:
        return torch.randperm(len(data), generator=own_generator(strategy, "replay exemplars")).tolist()


class TaskBalancedReplay(ReplayPlugin):
    """Avalanche's ReplayPlugin, updating its buffer through `post_adapt` (the deprecated `update` path resets the
    process's warning filters on every call and prints a notice per experience)."""

    def after_training_exp(self, strategy, **kwargs):
        # task-IL: one group per task label; class- and domain-IL give every experience label 0: one per experience
        self.storage_policy.groupby = "task" if getattr(strategy, "scenario", "task-il") == "task-il" else "experience"
        self.storage_policy.post_adapt(strategy, strategy.experience)


def make_replay_plugin(cfg: ReplayConfig, train_mb_size: int) -> ReplayPlugin:
    buffer = ParametricBuffer(max_size=cfg.mem_size, groupby="task",
                              selection_strategy=OwnRandomExemplars())
    return TaskBalancedReplay(mem_size=cfg.mem_size, batch_size=train_mb_size,
                        batch_size_mem=cfg.batch_size_mem or train_mb_size, storage_policy=buffer)


@STRATEGIES.register_plugins("replay", config_cls=ReplayConfig, draws_own_batches=True, trains_past_heads=True)
def replay_plugins(cfg: ReplayConfig, template_kwargs: dict) -> list:
    return [make_replay_plugin(cfg, template_kwargs["train_mb_size"])]
