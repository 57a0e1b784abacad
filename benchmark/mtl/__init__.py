"""Multi-task learning: `from benchmark.mtl import MultiTaskModel`.

Four registries (benchmark/mtl/registries.py): task sets, architectures, loss weightings, schedules; `hatswap mtl`
runs one experiment (benchmark/mtl/run.py), `hatswap batch --profile mtl` a profile of them (benchmark/mtl/batch.py).
"""

from benchmark.mtl.model import MultiTaskModel  # noqa: F401
from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES, TASK_SETS, WEIGHTINGS  # noqa: F401
