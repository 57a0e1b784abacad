"""Equal weighting: L = Σ_t L_t (the baseline every other weighting is compared with)."""

from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting


@WEIGHTINGS.register("equal")
def build(cfg, tasks: tuple[str, ...]) -> Weighting:
    return Weighting()
