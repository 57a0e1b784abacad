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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import mlp_blocks
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
        # layer j's K blocks: mlp_blocks(w_{j−1}, [w_j]) gives one Linear + activation (+ dropout) block
        self.blocks = nn.ModuleList(
            nn.ModuleList(mlp_blocks(w_in, [w], spec.dropout, "each" if spec.dropout_at == "each" or (
                spec.dropout_at == "last" and j == len(ins) - 1) else "none", spec.activation)[0]
                          for _ in range(cfg.blocks))
            for j, (w_in, w) in enumerate(zip(ins, spec.shared_layers, strict=True)))
        self.logits = nn.Parameter(torch.zeros(len(spec.tasks), len(ins), cfg.blocks))  # π: T × L × K
        self.out_dim = spec.shared_layers[-1]

    def selections(self) -> torch.Tensor:
        """s: T × L × K one-hot rows (straight-through Gumbel samples in training, argmax in evaluation)."""
        if self.training:
            return F.gumbel_softmax(self.logits, tau=self.temperature, hard=True, dim=-1)
        return F.one_hot(self.logits.argmax(-1), self.logits.shape[-1]).to(self.logits)

    def path(self, task: str) -> list[int]:
        """The block each layer uses for `task` in evaluation."""
        return self.logits[self.tasks.index(task)].argmax(-1).tolist()

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        s = self.selections()
        first = torch.stack([f(z) for f in self.blocks[0]])  # every task enters with z: run layer 1's blocks once
        h = [torch.einsum("k,kbw->bw", s[t, 0], first) for t in range(len(self.tasks))]
        for j, blocks in enumerate(self.blocks[1:], 1):
            h = [torch.einsum("k,kbw->bw", s[t, j], torch.stack([f(h[t]) for f in blocks]))
                 for t in range(len(self.tasks))]
        return dict(zip(self.tasks, h, strict=True))

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.blocks.parameters()]

    def last_shared_parameters(self):
        return list(self.blocks[-1].parameters())


@ARCHITECTURES.register("routing", config_cls=RoutingConfig)
def build(cfg: RoutingConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> Routing:
    return Routing(cfg or RoutingConfig(), spec, make_backbone)
