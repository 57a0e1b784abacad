"""Static weighting: L = Σ_t w_t L_t with user-given w (the multi-task experiments: [1, 0.5, 1], [0.5, 0.1, 1],
[0.5, 0.1, 1, 0.1]).

`--static.weights 1,0.5,1` (in task order) or `--static.weights classes=1,coarse=0.5,reconstruction=1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.errors import UserError
from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting, per_task_numbers


@dataclass(frozen=True)
class StaticConfig:
    weights: str = ""  # comma-separated, in task order, or name=value pairs; "" = all 1


def parse_weights(text: str, tasks: tuple[str, ...]) -> dict[str, float]:
    if not str(text).strip():
        return dict.fromkeys(tasks, 1.0)
    given = per_task_numbers(text, tasks, "--static.weights", "1,0.5,1")
    if missing := [t for t in tasks if t not in given]:
        raise UserError(f"static loss weights miss task(s) {missing}; give a weight for each of {list(tasks)}")
    if any(w < 0 for w in given.values()):
        raise UserError(f"static loss weights must be >= 0, got {given}")
    return given


class Static(Weighting):
    def __init__(self, weights: dict[str, float]):
        super().__init__()
        self.w = dict(weights)

    def weights(self, losses):
        return {t: torch.tensor(self.w[t]) for t in losses}


@WEIGHTINGS.register("static", config_cls=StaticConfig, fixed_weights="weights")
def build(cfg: StaticConfig, tasks: tuple[str, ...]) -> Static:
    return Static(parse_weights((cfg or StaticConfig()).weights, tasks))
