"""Multi-task architectures (registry `ARCHITECTURES`), one file each; the name is the file stem with '-' for '_'.

Each maps x to {task: B×out_dim representation}; `MultiTaskModel` adds one head per task from its TaskSpec.
"""

from benchmark.mtl.architectures import cross_stitch, mmoe, mtan, progressive, shared_bottom  # noqa: F401
