"""Task kinds as data: what a task's head reads and outputs, its loss, metrics, LwF term and target format.

Every task of every stream and task set is a `TaskSpec` (name, kind, the kind's typed parameters); everything that
depends on the kind asks the kind (`kind_of(spec)`), never the task's name or an `if kind == ...` chain. The kinds
are registered in `benchmark/tasks/kinds/<name>.py` (registry `KINDS`, name = file stem).
"""

from benchmark.tasks.criterion import TaskCriterion  # noqa: F401
from benchmark.tasks.kind import TaskKind, kind_of, task_kind  # noqa: F401
from benchmark.tasks.spec import TaskSpec  # noqa: F401
