"""Loss weightings (registry `WEIGHTINGS`), one file each, all through `Weighting.backward` (see base.py)."""

from benchmark.mtl.weightings import dwa, equal, gradnorm, pcgrad, static, uncertainty  # noqa: F401
