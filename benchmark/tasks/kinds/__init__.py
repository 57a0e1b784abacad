"""Task kinds (registry `KINDS`): one file each, registered under its file stem.

To add one: create `benchmark/tasks/kinds/<name>.py` with a `TaskKind` subclass (benchmark/tasks/kind.py)
decorated by `@KINDS.register("<name>", config_cls=<its params dataclass>)`, then add its import below.
"""

from benchmark.tasks.kinds import (  # noqa: F401  (registration)
    binary,
    binary_sigmoid,
    classification,
    detection,
    multiclass,
    multilabel,
    reconstruction,
    segmentation,
)
