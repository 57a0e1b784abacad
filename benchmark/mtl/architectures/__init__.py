"""Multi-task architectures (registry `ARCHITECTURES`), one file each; the name is the file stem with '-' for '_'.

Each maps x to {task: B×out_dim representation}; `MultiTaskModel` adds one head per task from its TaskSpec.
"""

from benchmark.mtl.architectures import (  # noqa: F401
    cross_stitch,
    group_lasso,
    low_rank,
    mmoe,
    mtan,
    progressive,
    routing,
    shared_bottom,
    sluice,
    task_attention,
    tensor_factorisation,
)
