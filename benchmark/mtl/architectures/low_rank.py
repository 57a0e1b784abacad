"""Low-rank task adaptation: shared weights plus a task-specific low-rank delta per layer (the "shared +
task-specific parameters" form of soft sharing; the delta is LoRA's, Hu et al. 2022, "LoRA: Low-Rank Adaptation of
Large Language Models", applied per task to a multi-task trunk).

Every task runs the same MLP of `shared_layers` on the backbone's pooled features, with its own rank-r correction
of every layer's weight:

    h_t^j = act( (W_j + U_t^j V_t^jᵀ) h_t^{j−1} + b_j ),      U_t^j: w_j×r,  V_t^j: w_{j−1}×r,  h_t^0 = z (B×D)

so rank(W_t^j − W_j) ≤ r. U starts at 0 (LoRA's initialisation): at the start every task reads the same shared
network, and each task's loss moves its own delta and the shared W. Parameters: the shared trunk plus
T·Σ_j r·(w_{j−1} + w_j).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import linear_layers, mlp_blocks
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class LowRankConfig:
    rank: int = 4  # r, the rank of every task's delta

    def __post_init__(self):
        if self.rank < 1:
            raise UserError(f"--low-rank.rank must be ≥ 1, got {self.rank}")


def initial_v(T: int, w_in: int, rank: int) -> torch.Tensor:
    return torch.randn(T, w_in, rank) / w_in ** 0.5


class LowRank(Architecture):
    def __init__(self, cfg: LowRankConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        self.trunk = mlp_blocks(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at, spec.activation)
        T, ins = len(spec.tasks), (self.backbone.dim, *spec.shared_layers[:-1])
        self.U = nn.ParameterList(nn.Parameter(torch.zeros(T, w, cfg.rank)) for w in spec.shared_layers)
        # V of the first layer waits for the input width when it is read at the first forward (like nn.LazyLinear)
        self.V = nn.ParameterList(nn.UninitializedParameter() if w_in is None else
                                  nn.Parameter(initial_v(T, w_in, cfg.rank)) for w_in in ins)
        self.out_dim = spec.shared_layers[-1]

    def task_weight(self, task: int, layer: int) -> torch.Tensor:
        """W_j + U_t^j V_t^jᵀ, the weight task t's layer j applies (w_j × w_{j−1}, as nn.Linear stores it)."""
        return self.trunk[layer][0].weight + self.U[layer][task] @ self.V[layer][task].T

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        if isinstance(self.V[0], nn.parameter.UninitializedParameter):
            with torch.no_grad():  # in place: an optimizer built before this forward holds this very Parameter
                self.V[0].materialize((len(self.tasks), z.shape[-1], self.U[0].shape[-1]))
                self.V[0].copy_(initial_v(len(self.tasks), z.shape[-1], self.U[0].shape[-1]))
        h = torch.stack([z] * len(self.tasks))  # T×B×w
        for j, block in enumerate(self.trunk):
            delta = torch.einsum("tbi,tir,tor->tbo", h, self.V[j], self.U[j])
            h = block[1:](block[0](h) + delta)
        return {t: h[k] for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.trunk.parameters()]

    def last_shared_parameters(self):
        return list(linear_layers(self.trunk)[-1].parameters())


@ARCHITECTURES.register("low-rank", config_cls=LowRankConfig)
def build(cfg: LowRankConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> LowRank:
    return LowRank(cfg or LowRankConfig(), spec, make_backbone)
