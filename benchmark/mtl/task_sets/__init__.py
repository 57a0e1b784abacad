"""Multi-task task sets (registry `TASK_SETS`): every image labelled for every task, as tensors."""

from benchmark.mtl.task_sets import dense_tasks, mtl_tasks  # noqa: F401  (registration)
from benchmark.mtl.task_sets.mtl_data import MTLData  # noqa: F401
