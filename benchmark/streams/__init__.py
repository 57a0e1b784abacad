"""Streams (registry `STREAMS`): Avalanche task-incremental benchmarks, one experience per task."""

from benchmark.streams import binary_tasks, dense_suite, permuted, rotated, split_classes  # noqa: F401  (registration)
from benchmark.streams.task_stream import Benchmark  # noqa: F401
