"""The four multi-task axes, each a `Registry` (name → builder): task sets, architectures, loss weightings,
schedules. Architecture and weighting are independent, as in LibMTL; any pair runs under any schedule."""

from dataclasses import dataclass

from benchmark.registry import Registry


@dataclass(frozen=True)
class TaskSetMeta:
    task_names: tuple[str, ...] = ()  # in order; the batch plans single-task baselines from them without the data


TASK_SETS = Registry("task set", "benchmark.mtl.task_sets", meta_cls=TaskSetMeta)
ARCHITECTURES = Registry("architecture", "benchmark.mtl.architectures")
WEIGHTINGS = Registry("loss weighting", "benchmark.mtl.weightings")
SCHEDULES = Registry("schedule", "benchmark.mtl.schedules")
