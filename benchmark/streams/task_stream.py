"""Turning per-task datasets into an Avalanche task-incremental benchmark (tasks: benchmark/tasks)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import DataAttribute, TaskAwareSupervisedClassificationDataset
from avalanche.benchmarks.utils.utils import concat_datasets
from torch.utils.data import Dataset

from benchmark.tasks import TaskSpec


@dataclass
class Benchmark:
    scenario: object  # avalanche CLScenario with train_stream / test_stream, task labels 0..T-1
    tasks: list[TaskSpec]  # what the model builds a head for (class-IL: one over every class)
    frames: dict[str, pd.DataFrame]  # split -> one row per sample: index, source_label, target, task_id
    provenance: dict
    # split -> [(dataset, targets)] per experience, as task_stream got them: what a scenario rebuilds the stream from
    sets: dict | None = None
    columns: list[TaskSpec] | None = None  # R's columns, one per experience (None: `tasks`; class-IL: the stream's)
    class_ranges: list[list[int]] | None = None  # class-IL: each experience's classes in the one head (scenarios.py)

    @classmethod
    def of(cls, train_sets, test_sets, tasks, frames, provenance) -> Benchmark:
        """task_stream over the sets, which the benchmark keeps (benchmark/harness/scenarios.py rebuilds from them)."""
        return cls(task_stream(train_sets, test_sets), tasks, frames, provenance,
                   sets={"train": list(train_sets), "test": list(test_sets)})

    @property
    def column_specs(self) -> list[TaskSpec]:
        return self.columns if self.columns is not None else self.tasks

    @property
    def joint_train(self):
        """The seed's joint dataset: every task's training data merged; each sample keeps its task label."""
        return concat_datasets([exp.dataset for exp in self.scenario.train_stream])

    def joint_frame(self, split: str = "train") -> pd.DataFrame:
        return self.frames[split]


def with_task_label(ds: Dataset, targets: list[int] | None, task_id: int):
    """An Avalanche dataset yielding (x, y, task_id); `targets` is metadata, so check it agrees with what ds yields.

    The task-aware classification class (not a plain AvalancheDataset) because Avalanche's task-grouped replay
    buffer and task-balanced loaders need its `task_set`. `targets=None`: y is a packed dense target (the dense
    suite), not a class; the `targets` attribute Avalanche's class timeline reads then holds the task id.
    """
    if targets is None:
        targets = [task_id] * len(ds)
    else:
        for i in range(min(8, len(ds))):
            if int(ds[i][1]) != targets[i]:
                raise ValueError(f"task {task_id}: ds[{i}] yields label {int(ds[i][1])} but targets[{i}]={targets[i]}")
    return TaskAwareSupervisedClassificationDataset([ds], data_attributes=[
        DataAttribute(list(targets), "targets"),
        DataAttribute([task_id] * len(ds), "targets_task_labels", use_in_getitem=True)])


def task_stream(train_sets, test_sets, task_labels: list[int] | None = None):
    """[(dataset, targets or None)] per task, same order in both → CLScenario with task label t for experience t
    (or `task_labels[t]`: class-IL gives every experience 0)."""
    labels = task_labels or list(range(len(train_sets)))
    train = [with_task_label(ds, y, labels[t]) for t, (ds, y) in enumerate(train_sets)]
    test = [with_task_label(ds, y, labels[t]) for t, (ds, y) in enumerate(test_sets)]
    return with_task_labels(with_classes_timeline(benchmark_from_datasets(train=train, test=test)))

