"""Averaged gradient episodic memory (Chaudhry et al. 2019): keep `patterns_per_experience` samples of every past
experience; before each step, the gradient g_ref of the loss on a random memory batch of `sample_size` samples,
and, when the step's gradient g conflicts with it (g·g_ref < 0), the step uses its projection

    g̃ = g − (g·g_ref / g_ref·g_ref) g_ref          (so that g̃·g_ref = 0)

Memory samples keep their task label and are routed to their own heads; the reference loss is the run's criterion
(packed targets on the dense suite). Avalanche's AGEMPlugin flattens gradients with `.view(-1)`, which fails on the
dense network's channels-last convolution weights, hence this plugin (same algorithm). Defaults: a 500-sample
memory as Mammoth's Seq-CIFAR-10 setting with buffer 500 (over the 2 past tasks of this 3-task stream: 250 per
experience), reference batch = Mammoth's minibatch_size 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import avalanche_forward

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import derived_seed, own_generator, own_rng
from benchmark.runtime.state import Stateful
from benchmark.tuning.space import Choice, searchable
from strategies.common.memory import flat_grad, sample_experience, set_flat_grad


@dataclass(frozen=True)
class AGEMConfig:
    patterns_per_experience: int = 250  # memory kept per past experience
    sample_size: int = field(default=32, metadata=searchable(Choice(  # memory samples per reference gradient
        (32, 64, 128, 256), source="Chaudhry et al. 2019 use 256 samples; Avalanche's default is 32")))

    def __post_init__(self):
        if self.patterns_per_experience < 1 or self.sample_size < 1:
            raise UserError(f"--agem.patterns-per-experience and --agem.sample-size must be ≥ 1 (got "
                            f"{self.patterns_per_experience}, {self.sample_size})")


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """g − (g·g_ref / g_ref·g_ref) g_ref when g·g_ref < 0, else g."""
    dot = torch.dot(g, g_ref)
    return g - (dot / torch.dot(g_ref, g_ref)) * g_ref if dot < 0 else g


class AGEMPlugin(Stateful, SupervisedPlugin):
    state_attrs, rebuilt_attrs = ("memory",), ("cfg", "generator")  # generator: own_generator's, rebound per training

    def __init__(self, cfg: AGEMConfig):
        super().__init__()
        self.cfg, self.memory = cfg, None  # (x, y, t) of every past experience, concatenated
        # its own (benchmark/runtime/randomness.py): from the run seed once training starts; torch's seed until then
        self.generator = torch.Generator().manual_seed(derived_seed(torch.initial_seed(), "strategy", "agem"))

    def before_training(self, strategy, **kwargs):
        self.generator = own_generator(strategy, "agem")

    def after_backward(self, strategy, **kwargs):
        if self.memory is None:
            return
        params = [p for p in strategy.model.parameters() if p.requires_grad]
        untouched = [p for p in params if p.grad is None]
        g = flat_grad(params).clone()
        idx = torch.randperm(len(self.memory[0]), generator=self.generator)[:self.cfg.sample_size]
        x, y, t = (m[idx].to(strategy.device) for m in self.memory)
        strategy.optimizer.zero_grad(set_to_none=False)
        with own_rng(self.generator, x.device):  # the memory forward's dropout
            out = avalanche_forward(strategy.model, x, t)
        strategy._criterion(out, y).backward()
        set_flat_grad(params, agem_project(g, flat_grad(params)), untouched)

    def after_training_exp(self, strategy, **kwargs):
        new = sample_experience(strategy.experience.dataset, self.cfg.patterns_per_experience, self.generator)
        self.memory = new if self.memory is None else tuple(torch.cat(p) for p in zip(self.memory, new, strict=True))


@STRATEGIES.register_plugins("agem", config_cls=AGEMConfig, trains_past_heads=True)
def agem_plugins(cfg: AGEMConfig, template_kwargs: dict) -> list:
    return [AGEMPlugin(cfg)]
