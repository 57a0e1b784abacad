"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to
Weigh Losses for Scene Geometry and Semantics").

With a learnt log-variance s_t = log σ_t² per task (initialised to 0, trained with the network):

    L = Σ_t exp(−s_t) · L_t + s_t

This is LibMTL's uniform form. The paper derives ½·exp(−s_t)·L_t + ½·s_t for a regression (Gaussian) task and
≈ exp(−s_t)·L_t + ½·s_t for a classification (softmax) task; the uniform form equals twice the paper's regression term
(the same minimiser, σ_t² = L_t) and differs from its classification term only in the regulariser's factor, which
moves the optimum from σ_t² = 2 L_t to σ_t² = L_t. The logged weight is exp(−s_t).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting


class Uncertainty(Weighting):
    def __init__(self, tasks: tuple[str, ...]):
        super().__init__()
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in tasks})

    def weights(self, losses):
        return {t: torch.exp(-self.log_vars[t]).detach() for t in losses}

    def combine(self, losses):
        return sum(torch.exp(-self.log_vars[t]) * losses[t] + self.log_vars[t] for t in losses)


@WEIGHTINGS.register("uncertainty")
def build(cfg, tasks: tuple[str, ...]) -> Uncertainty:
    return Uncertainty(tasks)
