"""Synaptic intelligence (Zenke et al. 2017): importances accumulated along the training trajectory.

While training experience k, after every optimizer step the path integral of each parameter's contribution to
the change in the task's loss,

    ω_i += −g_i · Δθ_i     (g: the gradient of the task's own loss at that step, before any penalty or other
                            strategy's term; Δθ: the step taken, whatever the optimizer)

and at the end of the experience, with Δ_i = θ_i(end of k) − θ_i(start of k),

    Ω_i ← max(0, Ω_i + ω_i / (Δ_i² + ξ)),   ω ← 0,   θ* = θ(end of k)

so that later experiences train on  loss = CE + c Σ_i Ω_i (θ_i − θ*_i)²  (the paper's form: no ½). As Zenke et
al.'s code (github.com/ganguli-lab/pathint, protocols.py PATH_INT_PROTOCOL): g is the unregularised loss's gradient
('unreg_grads'), computed here by a separate backward pass of the task's loss (`strategy.task_loss`, recorded by
the harness before any plugin adds to the loss; one extra backward per step), and Ω is clipped at 0 (`tf.nn.relu`)
after each task. Avalanche's SynapticIntelligencePlugin differs: it records θ before and after each step with
`param.detach().cpu().flatten()`, which on the CPU is a view of the live parameter, not a copy, so the two are the
same tensor and its path integral is 0 there (on a GPU `.cpu()` copies); it uses the total gradient, its own penalty
included; and it clips Ω from above (at 0.001), not at 0. Defaults: Mammoth's best SI arguments for Seq-CIFAR-10
(c = 0.5, ξ = 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.tuning.space import LogUniform, searchable
from strategies.common.importance import PenaltyPlugin, anchor, snapshot, trainable


@dataclass(frozen=True)
class SIConfig:
    c: float = field(default=0.5, metadata=searchable(LogUniform(  # strength of the surrogate loss
        1e-2, 1e4, stability=True, source="Zenke et al. 2017 and Mammoth use c of 0.1 to 1; van de Ven & Tolias' "
        "grids reach far larger values")))
    xi: float = field(default=1.0, metadata=searchable(LogUniform(  # ξ: damping of Δ² (parameters that did not move)
        1e-4, 1.0, source="Zenke et al. 2017 use 1e-3 (MNIST) and 0.1 (CIFAR), Mammoth 1; the squared drift per "
        "experience here is about 1e-5, so the range reaches below it")))

    def __post_init__(self):
        if self.c < 0 or self.xi <= 0:
            raise UserError(f"--si.c must be ≥ 0 and --si.xi > 0 (got {self.c}, {self.xi})")


class SIPlugin(PenaltyPlugin):
    # ω and θ at the start: set anew at every experience's start; the step's gradient and θ: within one step
    state_attrs = (*PenaltyPlugin.state_attrs, "omega_total")
    rebuilt_attrs = ("cfg", "omega", "start", "_grad", "_before")

    def __init__(self, cfg: SIConfig):
        super().__init__()
        self.cfg = cfg
        self.omega_total: dict = {}  # Ω, summed over past experiences (clipped at 0)
        self.omega: dict = {}  # ω of the experience being trained
        self.start: dict = {}  # θ at its start
        self._grad, self._before = {}, {}

    def weight(self) -> float:
        return self.cfg.c

    def before_training_exp(self, strategy, **kwargs):
        self.start = snapshot(strategy.model)
        self.omega = {n: p.new_zeros(p.shape) for n, p in self.start.items()}

    def before_backward(self, strategy, **kwargs):
        # the task's own gradient, before this plugin's penalty and any other strategy's term reach the loss
        params = trainable(strategy.model)
        task_loss = getattr(strategy, "task_loss", None)  # None: a template driven without the harness's plugins
        task_loss = strategy.loss if task_loss is None else task_loss
        grads = torch.autograd.grad(task_loss, list(params.values()), retain_graph=True, allow_unused=True) \
            if task_loss.requires_grad else [None] * len(params)
        self._grad = {n: g for n, g in zip(params, grads, strict=True) if g is not None}
        super().before_backward(strategy, **kwargs)

    def before_update(self, strategy, **kwargs):
        params = trainable(strategy.model)
        self._before = {n: params[n].detach().clone() for n in self._grad}

    def after_update(self, strategy, **kwargs):
        params = trainable(strategy.model)
        for name, g in self._grad.items():
            self.omega[name] -= g * (params[name].detach() - self._before[name])

    def after_training_exp(self, strategy, **kwargs):
        end = snapshot(strategy.model)
        for name, w in self.omega.items():
            delta = end[name] - self.start[name]
            self.omega_total[name] = (self.omega_total.get(name, 0) + w / (delta**2 + self.cfg.xi)).clamp(min=0)
        self.anchors = [anchor(dict(self.omega_total), end)]


@STRATEGIES.register_plugins("si", config_cls=SIConfig)
def si_plugins(cfg: SIConfig, template_kwargs: dict) -> list:
    return [SIPlugin(cfg)]
