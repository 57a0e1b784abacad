"""Static weighting: L = Σ_t w_t L_t with user-given w (the multi-task experiments: [1, 0.5, 1], [0.5, 0.1, 1],
[0.5, 0.1, 1, 0.1]).

`--static.weights 1,0.5,1` (in task order) or `--static.weights classes=1,coarse=0.5,reconstruction=1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.errors import UserError
from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting


@dataclass(frozen=True)
class StaticConfig:
    weights: str = ""  # comma-separated, in task order, or name=value pairs; "" = all 1


def parse_weights(text: str, tasks: tuple[str, ...]) -> dict[str, float]:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        return dict.fromkeys(tasks, 1.0)
    try:
        if all("=" in p for p in parts):
            given = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
        else:
            given = dict(zip(tasks, map(float, parts), strict=False))
            if len(parts) != len(tasks):
                raise UserError(f"--static.weights has {len(parts)} values for {len(tasks)} tasks "
                                f"({', '.join(tasks)}); give one per task")
    except ValueError:
        raise UserError(f"--static.weights takes numbers (e.g. 1,0.5,1) or name=value pairs, got {text!r}") from None
    if missing := [t for t in tasks if t not in given]:
        raise UserError(f"static loss weights miss task(s) {missing}; give a weight for each of {list(tasks)}")
    if unknown := [t for t in given if t not in tasks]:
        raise UserError(f"static loss weights name unknown task(s) {unknown}; tasks are {list(tasks)}")
    if any(w < 0 for w in given.values()):
        raise UserError(f"static loss weights must be >= 0, got {given}")
    return given


class Static(Weighting):
    def __init__(self, weights: dict[str, float]):
        super().__init__()
        self.w = dict(weights)

    def weights(self, losses):
        return {t: torch.tensor(self.w[t]) for t in losses}


@WEIGHTINGS.register("static", config_cls=StaticConfig)
def build(cfg: StaticConfig, tasks: tuple[str, ...]) -> Static:
    return Static(parse_weights((cfg or StaticConfig()).weights, tasks))
