"""Synaptic intelligence (Zenke et al. 2017): importances accumulated along the training trajectory.

While training experience k, after every optimizer step the path integral of each parameter's contribution to
the change in loss,

    ω_i += −g_i · Δθ_i         (g: the gradient the step used; Δθ: the step itself, whatever the optimizer)

and at the end of the experience, with Δ_i = θ_i(end of k) − θ_i(start of k),

    Ω_i += ω_i / (Δ_i² + ξ),   ω ← 0,   θ* = θ(end of k)

so that later experiences train on  loss = CE + c Σ_i Ω_i (θ_i − θ*_i)²  (the paper's form: no ½). Avalanche's
SynapticIntelligencePlugin approximates Δθ as −lr·g (exact for plain SGD only) and reads a fixed parameter list
built before training; this plugin measures the step taken, so Adam (the harness's default optimizer) is counted
right. Defaults: Mammoth's best SI arguments for Seq-CIFAR-10 (c = 0.5, ξ = 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

from avalanche.training.templates import SupervisedTemplate

from benchmark.errors import UserError
from benchmark.importance import PenaltyPlugin, snapshot, trainable
from benchmark.registry import STRATEGIES


@dataclass(frozen=True)
class SIConfig:
    c: float = 0.5  # strength of the surrogate loss
    xi: float = 1.0  # ξ: damping of Δ² (no division by zero for parameters that did not move)

    def __post_init__(self):
        if self.c < 0 or self.xi <= 0:
            raise UserError(f"--si.c must be ≥ 0 and --si.xi > 0 (got {self.c}, {self.xi})")


class SIPlugin(PenaltyPlugin):
    def __init__(self, cfg: SIConfig):
        super().__init__()
        self.cfg = cfg
        self.omega_total: dict = {}  # Ω, summed over past experiences
        self.omega: dict = {}  # ω of the experience being trained
        self.start: dict = {}  # θ at its start
        self._grad, self._before = {}, {}

    def weight(self) -> float:
        return self.cfg.c

    def before_training_exp(self, strategy, **kwargs):
        self.start = snapshot(strategy.model)
        self.omega = {n: p.new_zeros(p.shape) for n, p in self.start.items()}

    def before_update(self, strategy, **kwargs):
        params = trainable(strategy.model)
        self._grad = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
        self._before = {n: params[n].detach().clone() for n in self._grad}

    def after_update(self, strategy, **kwargs):
        params = trainable(strategy.model)
        for name, g in self._grad.items():
            self.omega[name] -= g * (params[name].detach() - self._before[name])

    def after_training_exp(self, strategy, **kwargs):
        end = snapshot(strategy.model)
        for name, w in self.omega.items():
            delta = end[name] - self.start[name]
            self.omega_total[name] = self.omega_total.get(name, 0) + w / (delta**2 + self.cfg.xi)
        self.anchors = [(dict(self.omega_total), end)]


@STRATEGIES.register("si", config_cls=SIConfig, plugins=lambda cfg, template_kwargs: [SIPlugin(cfg)])
def build_si(cfg: SIConfig, plugins=(), **template_kwargs) -> SupervisedTemplate:
    return SupervisedTemplate(plugins=[*plugins, SIPlugin(cfg)], **template_kwargs)
