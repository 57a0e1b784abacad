"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to
Weigh Losses for Scene Geometry and Semantics").

With a learnt log-variance s_t = log σ_t² per task (trained with the network):

    L = Σ_t exp(−s_t) · L_t + s_t

This is LibMTL's uniform form. The paper derives ½·exp(−s_t)·L_t + ½·s_t for a regression (Gaussian) task and
≈ exp(−s_t)·L_t + ½·s_t for a classification (softmax) task; the uniform form equals twice the paper's regression term
(the same minimiser, σ_t² = L_t) and differs from its classification term only in the regulariser's factor, which
moves the optimum from σ_t² = 2 L_t to σ_t² = L_t. The logged weight is exp(−s_t).

s_t starts at 0 (weight 1), or at −log w_t for an initial weight w_t > 0 given by `--uncertainty.init-weights
task1=1,task2=0.5` (the multi-task toolkit's `init_weights={'task1': 1.0, 'task2': 1.0}`; tasks left out start at 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting, per_task_numbers


@dataclass(frozen=True)
class UncertaintyConfig:
    # initial exp(−s_t): name=value pairs (tasks left out: 1) or one value per task; "" = all 1
    init_weights: str = field(default="", metadata={"keyword": "init_weights"})


def initial_weights(text: str, tasks: tuple[str, ...]) -> dict[str, float]:
    given = per_task_numbers(text, tasks, "--uncertainty.init-weights", "1,1,0.5")
    if any(not 0 < w < math.inf for w in given.values()):
        raise UserError(f"uncertainty init_weights must be positive and finite (w = exp(−s)), got {given}")
    return {t: given.get(t, 1.0) for t in tasks}


class Uncertainty(Weighting):
    def __init__(self, tasks: tuple[str, ...], init: dict[str, float] | None = None):
        super().__init__()
        init = init or dict.fromkeys(tasks, 1.0)
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.tensor(math.log(1 / init[t]))) for t in tasks})

    def weights(self, losses):
        return {t: torch.exp(-self.log_vars[t]).detach() for t in losses}

    def combine(self, losses):
        return sum(torch.exp(-self.log_vars[t]) * losses[t] + self.log_vars[t] for t in losses)


@WEIGHTINGS.register("uncertainty", config_cls=UncertaintyConfig)
def build(cfg: UncertaintyConfig, tasks: tuple[str, ...]) -> Uncertainty:
    return Uncertainty(tasks, initial_weights((cfg or UncertaintyConfig()).init_weights, tasks))
