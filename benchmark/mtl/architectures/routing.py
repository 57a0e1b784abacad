"""Routing networks (Rosenbaum, Klinger & Riemer 2018, "Routing Networks: Adaptive Selection of Non-linear
Functions for Multi-Task Learning", ICLR), trained with the Gumbel-softmax router of Maziarz et al. 2019
("Flexible Multi-task Networks by Learning Parameter Allocation", the Gumbel-Matrix routing) instead of the
paper's reinforcement-learnt one: differentiable, no reward design or separate router optimiser.

Every layer j holds K function blocks f_1^j … f_K^j (Linear + activation, width w_j), shared by all tasks. Task t
has its own router logits π_t^j ∈ ℝ^K per layer (the paper's per-task agent whose state is the task label) and
passes through one block per layer:

    h_t^j = Σ_k s_{t,k}^j · f_k^j(h_t^{j−1}),     h_t^0 = z (B×D)
    training: s_t^j = one_hot(argmax_k (π_t^j[k] + g_k)), g_k ~ Gumbel(0, 1), with the gradient of
              softmax((π_t^j + g)/τ) (straight-through Gumbel-softmax, Jang et al. 2017)
    evaluation: s_t^j = one_hot(argmax_k π_t^j[k])            → `path(t)`: the chosen block per layer

Tasks that pick the same block share it; the routers learn which tasks share what. Logits start at 0 (uniform).
The shared parameters (what PCGrad projects) are those of the blocks two or more tasks went through in the last
step, plus the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import block_tail, linear
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class RoutingConfig:
    blocks: int = 3  # K, function blocks per layer
    temperature: float = 1.0  # τ of the Gumbel-softmax

    def __post_init__(self):
        if self.blocks < 1 or self.temperature <= 0:
            raise UserError(f"--routing.blocks must be ≥ 1 and --routing.temperature > 0, got {self.blocks}, "
                            f"{self.temperature}")


class Routing(Architecture):
    def __init__(self, cfg: RoutingConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks, self.temperature = spec.tasks, cfg.temperature
        self.backbone = make_backbone()
        ins = (self.backbone.dim, *spec.shared_layers[:-1])
        n = len(ins)  # layer j's K blocks, each Linear + activation (+ dropout), as one block of an MLP
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.Sequential(linear(w_in, w), *block_tail(j, n, spec.dropout, spec.dropout_at,
                                                                     spec.activation)) for _ in range(cfg.blocks))
            for j, (w_in, w) in enumerate(zip(ins, spec.shared_layers, strict=True)))
        # π_t: L × K, task t's router (one Parameter per task: only its loss reaches it)
        self.logits = nn.ParameterList(nn.Parameter(torch.zeros(len(ins), cfg.blocks)) for _ in spec.tasks)
        self.selected = None  # the last forward's selections: which blocks several tasks went through
        self.out_dim = spec.shared_layers[-1]

    def selections(self) -> torch.Tensor:
        """s: T × L × K one-hot rows (straight-through Gumbel samples in training, argmax in evaluation)."""
        logits = torch.stack(list(self.logits))
        if self.training:
            return F.gumbel_softmax(logits, tau=self.temperature, hard=True, dim=-1)
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits)

    def path(self, task: str) -> list[int]:
        """The block each layer uses for `task` in evaluation."""
        return self.logits[self.tasks.index(task)].argmax(-1).tolist()

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        s = self.selections()
        self.selected = s.detach()
        first = torch.stack([f(z) for f in self.blocks[0]])  # every task enters with z: run layer 1's blocks once
        h = [torch.einsum("k,kbw->bw", s[t, 0], first) for t in range(len(self.tasks))]
        for j, blocks in enumerate(self.blocks[1:], 1):
            h = [torch.einsum("k,kbw->bw", s[t, j], torch.stack([f(h[t]) for f in blocks]))
                 for t in range(len(self.tasks))]
        return dict(zip(self.tasks, h, strict=True))

    def _shared_blocks(self, layers) -> list[nn.Parameter]:
        """The blocks of `layers` that two or more tasks went through in the last forward (before any: all)."""
        if self.selected is None:
            return [p for j in layers for p in self.blocks[j].parameters()]
        return [p for j in layers for k, f in enumerate(self.blocks[j]) if self.selected[:, j, k].sum() >= 2
                for p in f.parameters()]

    def shared_parameters(self):
        # What several tasks reach changes with every routing decision: the blocks chosen by two or more tasks in
        # the step just run (PCGrad and GradNorm call this after the forward), plus the backbone.
        return [*self.backbone.parameters(), *self._shared_blocks(range(len(self.blocks)))]

    def last_shared_parameters(self):
        return self._shared_blocks([len(self.blocks) - 1]) or self.backbone.last_parameters()


@ARCHITECTURES.register("routing", config_cls=RoutingConfig)
def build(cfg: RoutingConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> Routing:
    return Routing(cfg or RoutingConfig(), spec, make_backbone)
