"""Dark experience replay (Buzzega et al. 2020): replay past samples with the outputs the network gave them.

A memory of `mem_size` samples filled by reservoir sampling over everything trained so far (every sample of the
stream has the same chance to be kept), each stored with its input, target, task label and the model's output z
when it was trained on. Each step adds, on two independent memory batches of the training batch size,

    loss = CE  +  α · MSE(f(x'), z')  +  β · CE(f(x''), y'')          (DER: β = 0;  DER++: β > 0)

Outputs are the model's routed rows; the columns past a task's own head (−inf for logits) are read as 0 on both
sides, so each sample is matched on its own head only. Avalanche's DER stores the raw rows, whose −inf padding
makes the MSE NaN on this model, hence this plugin. Defaults: DER++ with α = 0.2, β = 0.5 and a 500-sample
memory, Mammoth's best arguments for Seq-CIFAR-10 with buffer 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models import avalanche_forward

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import derived_seed, own_generator, own_rng
from benchmark.runtime.state import Stateful
from benchmark.tuning.space import LogUniform, Uniform, searchable


@dataclass(frozen=True)
class DERConfig:
    alpha: float = field(default=0.2, metadata=searchable(LogUniform(  # α: weight of the logit term
        0.05, 2.0, stability=True, source="spans Buzzega et al. 2020's grid (α 0.1 to 1)")))
    beta: float = field(default=0.5, metadata=searchable(Uniform(  # β: weight of the label term (0: DER)
        0.0, 1.0, source="spans Buzzega et al. 2020's grid (β 0.5 to 1) down to DER without labels (0)")))
    mem_size: int = 500  # samples kept

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or self.mem_size < 1:
            raise UserError(f"--der.alpha and --der.beta must be ≥ 0 and --der.mem-size ≥ 1 (got {self.alpha}, "
                            f"{self.beta}, {self.mem_size})")


def finite(out: torch.Tensor) -> torch.Tensor:
    """A routed output with its padding (−inf past a task's head) read as 0."""
    return out.masked_fill(torch.isneginf(out), 0.0)


class DERPlugin(Stateful, SupervisedPlugin):
    state_attrs, rebuilt_attrs = ("seen", "size", "memory"), ("cfg", "generator")  # generator: own_generator's

    def __init__(self, cfg: DERConfig):
        super().__init__()
        self.cfg, self.seen, self.size, self.memory = cfg, 0, 0, None  # memory: [x, y, t, z], capacity rows each
        # its own (benchmark/runtime/randomness.py): from the run seed once training starts; torch's seed until then
        self.generator = torch.Generator().manual_seed(derived_seed(torch.initial_seed(), "strategy", "der"))

    def before_training(self, strategy, **kwargs):
        self.generator = own_generator(strategy, "der")

    def _batch(self, n: int):
        idx = torch.randint(self.size, (min(n, self.size),), generator=self.generator)
        return [m[idx.to(m.device)] for m in self.memory]

    def before_backward(self, strategy, **kwargs):
        if self.size == 0:
            return
        n = len(strategy.mb_y)
        (x, _, t, z), labelled = self._batch(n), self._batch(n) if self.cfg.beta > 0 else None
        with own_rng(self.generator, x.device):  # the memory forwards' dropout: not the global generator's
            strategy.loss = strategy.loss + self.cfg.alpha * F.mse_loss(
                finite(avalanche_forward(strategy.model, x, t)), z)
            if labelled is not None:
                x, y, t, _ = labelled
                strategy.loss = strategy.loss + self.cfg.beta * strategy._criterion(
                    avalanche_forward(strategy.model, x, t), y)

    @torch.no_grad()
    def after_training_iteration(self, strategy, **kwargs):
        rows = [strategy.mb_x, strategy.mb_y, strategy.mb_task_id, finite(strategy.mb_output.detach())]
        if self.memory is None:
            self.memory = [r.new_zeros((self.cfg.mem_size, *r.shape[1:])) for r in rows]
        for i in range(len(rows[0])):  # reservoir sampling (Vitter's algorithm R)
            slot = self.size if self.size < self.cfg.mem_size else \
                int(torch.randint(self.seen + 1, (1,), generator=self.generator))
            self.seen += 1
            if slot < self.cfg.mem_size:
                for m, r in zip(self.memory, rows, strict=True):
                    m[slot] = r[i]
                self.size = min(self.size + 1, self.cfg.mem_size)


@STRATEGIES.register_plugins("der", config_cls=DERConfig, trains_past_heads=True)
def der_plugins(cfg: DERConfig, template_kwargs: dict) -> list:
    return [DERPlugin(cfg)]
