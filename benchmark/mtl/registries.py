"""The four multi-task axes, each a `Registry` (name → builder): task sets, architectures, loss weightings,
schedules. Architecture and weighting are independent, as in LibMTL; any pair runs under any schedule."""

from benchmark.registry import Registry

TASK_SETS = Registry("task set", "benchmark.mtl.task_sets")
ARCHITECTURES = Registry("architecture", "benchmark.mtl.architectures")
WEIGHTINGS = Registry("loss weighting", "benchmark.mtl.weightings")
SCHEDULES = Registry("schedule", "benchmark.mtl.schedules")
