"""Experience replay: a memory of `mem_size` samples, split evenly over the tasks seen so far (random exemplars per
task; in class- and domain-IL, where every experience has task label 0, over the experiences), and every training
mini-batch is joined by `batch_size_mem` samples drawn from it. Replayed samples keep their task label, so each is
routed to — and trains — its own task's head. The exemplars are drawn from replay's own generator (Avalanche's
RandomExemplarsSelectionStrategy shuffles with Python's global `random`), the memory batches' order from the
harness's memory-order generator (benchmark/runtime/randomness.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import (
    ParametricBuffer,
    RandomExemplarsSelectionStrategy,
    _ParametricSingleBuffer,
)

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import own_generator
from benchmark.runtime.state import Stateful
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


class PositionedGroup(_ParametricSingleBuffer):
    """Avalanche's group buffer, which also keeps each stored sample's (experience, position in that experience's
    group data): a checkpoint saves the positions, and the buffer comes back from the run's train stream."""

    def __init__(self, max_size: int, selection_strategy):
        super().__init__(max_size, selection_strategy)
        self.positions: list[tuple[int, int]] = []

    def update_from_dataset(self, strategy, new_data):
        exp = strategy.experience.current_experience
        self.positions = self.positions + [(exp, i) for i in range(len(new_data))]
        self.buffer = new_data if len(self.buffer) == 0 else self.buffer.concat(new_data)
        self.resize(strategy, self.max_size)

    def resize(self, strategy, new_size: int):
        self.max_size = new_size
        idxs = self.selection_strategy.make_sorted_indices(strategy=strategy, data=self.buffer)[:new_size]
        self.buffer = self.buffer.subset(idxs)
        self.positions = [self.positions[i] for i in idxs]


class PositionedBuffer(ParametricBuffer):
    """ParametricBuffer (its post_adapt, line for line) over PositionedGroups."""

    def post_adapt(self, agent, exp):
        new_groups = self._make_groups(agent, exp.dataset)
        self.seen_groups.update(new_groups.keys())
        group_to_len = dict(zip(self.seen_groups, self.get_group_lengths(len(self.seen_groups)), strict=True))
        for group_id, new_data_g in new_groups.items():
            ll = group_to_len[group_id]
            if group_id in self.buffer_groups:
                self.buffer_groups[group_id].update_from_dataset(agent, new_data_g)
                self.buffer_groups[group_id].resize(agent, ll)
            else:
                new_buffer = PositionedGroup(ll, self.selection_strategy)
                new_buffer.update_from_dataset(agent, new_data_g)
                self.buffer_groups[group_id] = new_buffer
        for group_id in self.buffer_groups:
            self.buffer_groups[group_id].resize(agent, group_to_len[group_id])


class TaskBalancedReplay(Stateful, ReplayPlugin):
    """Avalanche's ReplayPlugin, updating its buffer through `post_adapt` (the deprecated `update` path resets the
    process's warning filters on every call and prints a notice per experience). Its state: the groups' positions."""

    rebuilt_attrs = ("mem_size", "batch_size", "batch_size_mem", "task_balanced_dataloader", "storage_policy")

    def state_dict(self) -> dict:
        policy = self.storage_policy
        return {"groupby": policy.groupby, "seen_groups": set(policy.seen_groups),
                "groups": [(g, b.max_size, b.positions) for g, b in policy.buffer_groups.items()]}

    def load_state_dict(self, state: dict, strategy=None) -> None:
        policy = self.storage_policy
        policy.groupby, policy.seen_groups, policy.buffer_groups = state["groupby"], set(state["seen_groups"]), {}
        for group_id, max_size, positions in state["groups"]:
            group = PositionedGroup(max_size, policy.selection_strategy)
            group.positions = [tuple(p) for p in positions]
            sources = sorted({e for e, _ in positions})  # the stored samples, in their order, from every source
            if not sources:  # a group given no room (a memory smaller than the number of groups)
                group.buffer = concat_datasets([])
                policy.buffer_groups[group_id] = group
                continue
            data = [self.group_data(strategy, e, group_id) for e in sources]
            start = dict(zip(sources, itertools.accumulate([0, *map(len, data)]), strict=False))
            whole = data[0] if len(data) == 1 else concat_datasets(data)
            group.buffer = whole.subset([start[e] + i for e, i in group.positions])
            policy.buffer_groups[group_id] = group

    def group_data(self, strategy, exp: int, group_id: int):
        data = strategy.resume_stream[exp].dataset
        return data.task_set[group_id] if self.storage_policy.groupby == "task" else data

    def after_training_exp(self, strategy, **kwargs):
        # task-IL: one group per task label; class- and domain-IL give every experience label 0: one per experience
        self.storage_policy.groupby = "task" if getattr(strategy, "scenario", "task-il") == "task-il" else "experience"
        self.storage_policy.post_adapt(strategy, strategy.experience)


def make_replay_plugin(cfg: ReplayConfig, train_mb_size: int) -> ReplayPlugin:
    buffer = PositionedBuffer(max_size=cfg.mem_size, groupby="task",
                              selection_strategy=OwnRandomExemplars())
    return TaskBalancedReplay(mem_size=cfg.mem_size, batch_size=train_mb_size,
                        batch_size_mem=cfg.batch_size_mem or train_mb_size, storage_policy=buffer)


@STRATEGIES.register_plugins("replay", config_cls=ReplayConfig, draws_own_batches=True, trains_past_heads=True)
def replay_plugins(cfg: ReplayConfig, template_kwargs: dict) -> list:
    return [make_replay_plugin(cfg, template_kwargs["train_mb_size"])]
