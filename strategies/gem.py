"""Gradient episodic memory (Lopez-Paz & Ranzato 2017): keep `patterns_per_experience` samples of every past
experience k; at each step, with g the step's gradient and G_k the gradient of the loss on memory k, when some
g·G_k < 0 the step uses the closest gradient that conflicts with none,

    g̃ = argmin_z ½‖g − z‖²  s.t.  G z ≥ 0,   solved in the dual:  v* = argmin_{v ≥ γ} ½ vᵀ G Gᵀ v + (G g)ᵀ v,
    g̃ = Gᵀ v* + g

with the margin γ (`memory_strength`, GEM's own code; 0 gives the exact projection). The dual has one variable per
past task, so it is solved exactly as non-negative least squares (scipy's NNLS on the Cholesky factor of GGᵀ):
Avalanche's GEMPlugin needs a quadprog solver that this project does not install. Defaults: γ = 0.5 and a
500-sample memory, Mammoth's best GEM arguments for Seq-CIFAR-10 with buffer 500 (250 per past experience here).

Cost: every step runs a forward and backward pass over each past task's whole memory (GEM as published). With
`memory_batch` = n > 0, each G_k is instead the gradient on n samples of memory k drawn afresh at every step: a
stochastic estimate that caps the cost at n samples per past task (the `zoo` profile sets it; 0 = the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import avalanche_forward

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import derived_seed, own_generator, own_rng
from benchmark.runtime.state import Stateful
from benchmark.tuning.space import Uniform, searchable
from strategies.common.memory import flat_grad, sample_experience, set_flat_grad


@dataclass(frozen=True)
class GEMConfig:
    patterns_per_experience: int = 250  # memory kept per past experience
    memory_strength: float = field(default=0.5, metadata=searchable(Uniform(  # γ
        0.0, 1.0, stability=True, source="Lopez-Paz & Ranzato 2017 search γ over {0, 0.5, 1}")))
    memory_batch: int = 0  # samples of each past memory per step; 0 = all of it (the paper)

    def __post_init__(self):
        if self.patterns_per_experience < 1 or self.memory_strength < 0 or self.memory_batch < 0:
            raise UserError(f"--gem.patterns-per-experience must be ≥ 1, --gem.memory-strength ≥ 0 and "
                            f"--gem.memory-batch ≥ 0 (got {self.patterns_per_experience}, {self.memory_strength}, "
                            f"{self.memory_batch})")


def project(g: torch.Tensor, G: torch.Tensor, margin: float, eps: float = 1e-3) -> torch.Tensor:
    """g̃ = Gᵀ v* + g, v* = argmin_{v ≥ margin} ½ vᵀ (GGᵀ + eps·I) v + (Gg)ᵀ v (eps: GEM's own regularisation)."""
    Gd, gd = G.double().cpu().numpy(), g.double().cpu().numpy()
    P = Gd @ Gd.T + eps * np.eye(len(Gd))
    c = Gd @ gd + P @ np.full(len(Gd), margin)  # v = u + margin, u ≥ 0
    L = scipy.linalg.cholesky(P, lower=True)
    u, _ = scipy.optimize.nnls(L.T, -scipy.linalg.solve_triangular(L, c, lower=True))
    return torch.from_numpy(Gd.T @ (u + margin) + gd).to(g)


class GEMPlugin(Stateful, SupervisedPlugin):
    state_attrs, rebuilt_attrs = ("memories", "projected"), ("cfg", "generator")  # generator: own_generator's

    def __init__(self, cfg: GEMConfig):
        super().__init__()
        self.cfg, self.memories = cfg, []
        # its own (benchmark/runtime/randomness.py): from the run seed once training starts; torch's seed until then
        self.generator = torch.Generator().manual_seed(derived_seed(torch.initial_seed(), "strategy", "gem"))
        self.projected = 0  # steps whose gradient was projected, for inspection

    def before_training(self, strategy, **kwargs):
        self.generator = own_generator(strategy, "gem")

    def after_backward(self, strategy, **kwargs):
        if not self.memories:
            return
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        untouched = [p for p in params if p.grad is None]  # e.g. other tasks' heads: the step leaves them alone
        g = flat_grad(params).clone()
        rows = []
        for memory in self.memories:
            x, y, t = (m.to(strategy.device) for m in self.draw(memory))
            strategy.optimizer.zero_grad(set_to_none=False)
            with own_rng(self.generator, x.device):  # the memory forward's dropout
                out = avalanche_forward(strategy.model, x, t)
            strategy._criterion(out, y).backward()
            rows.append(flat_grad(params).clone())
        G = torch.stack(rows)
        if (G @ g < 0).any():
            g = project(g, G, self.cfg.memory_strength)
            self.projected += 1
        set_flat_grad(params, g, untouched)

    def draw(self, memory: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The whole memory, or `memory_batch` samples of it drawn afresh."""
        n = self.cfg.memory_batch
        if not n or n >= len(memory[0]):
            return memory
        idx = torch.randperm(len(memory[0]), generator=self.generator)[:n]
        return tuple(m[idx] for m in memory)

    def after_training_exp(self, strategy, **kwargs):
        self.memories.append(sample_experience(strategy.experience.dataset, self.cfg.patterns_per_experience,
                                               self.generator))


@STRATEGIES.register_plugins("gem", config_cls=GEMConfig, trains_past_heads=True)
def gem_plugins(cfg: GEMConfig, template_kwargs: dict) -> list:
    return [GEMPlugin(cfg)]
