"""GradNorm (Chen et al. 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
Networks").

Weights w_t = T · softmax(ω)_t (ω learnt, initialised to 0 → w = 1), so they stay positive and sum to T (the number
of active tasks) after every step by construction — LibMTL's parametrisation of the paper's "renormalise to T".
On the last shared layer W, with L_t(0) the task's first observed loss:

    G_t = ‖∇_W w_t L_t‖₂ = w_t ‖∇_W L_t‖₂,       Ḡ = mean_t G_t
    L̃_t = L_t / L_t(0),   r_t = L̃_t / mean_i L̃_i
    L_grad = Σ_t | G_t − sg(Ḡ · r_t^α) |          (sg = stop-gradient; only ω receives ∂L_grad)

The network is trained on Σ_t sg(w_t) L_t. α (asymmetry) = 1.5 by default (the paper uses 0.12–3).
With no shared layer (progressive) ω is not updated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting


@dataclass(frozen=True)
class GradNormConfig:
    alpha: float = 1.5  # restoring force towards equal training rates

    def __post_init__(self):
        if self.alpha < 0:
            raise UserError(f"--gradnorm.alpha must be >= 0, got {self.alpha}")


class GradNorm(Weighting):
    def __init__(self, cfg: GradNormConfig, tasks: tuple[str, ...]):
        super().__init__()
        self.alpha, self.tasks = cfg.alpha, tuple(tasks)
        self.omega = nn.Parameter(torch.zeros(len(tasks)))
        self.initial: dict[str, float] = {}

    def _w(self, active) -> torch.Tensor:
        idx = [self.tasks.index(t) for t in active]
        return len(idx) * torch.softmax(self.omega[idx], dim=0)

    def weights(self, losses):
        return {t: w for t, w in zip(losses, self._w(list(losses)).detach(), strict=True)}

    def backward(self, losses, shared, last_shared):
        active = list(losses)
        for t in active:
            self.initial.setdefault(t, float(losses[t].detach()))
        w = self._w(active)
        omega_grad = None
        if last_shared and len(active) > 1:
            norms = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(
                losses[t], last_shared, retain_graph=True, allow_unused=True, materialize_grads=True)]).norm()
                for t in active])
            G = w * norms
            ratio = torch.tensor([float(losses[t].detach()) / self.initial[t] for t in active])
            target = (G.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
            omega_grad = torch.autograd.grad((G - target).abs().sum(), self.omega)[0]
        sum(wt * losses[t] for wt, t in zip(w.detach(), active, strict=True)).backward()
        if omega_grad is not None:
            self.omega.grad = omega_grad
        return {t: float(wt) for wt, t in zip(w.detach(), active, strict=True)}


@WEIGHTINGS.register("gradnorm", config_cls=GradNormConfig, aliases=("grad-norm",))
def build(cfg: GradNormConfig, tasks: tuple[str, ...]) -> GradNorm:
    return GradNorm(cfg or GradNormConfig(), tasks)
