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


def initial_v(w_in: int, rank: int) -> torch.Tensor:
    return torch.randn(w_in, rank) / w_in ** 0.5


class LowRank(Architecture):
    def __init__(self, cfg: LowRankConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        self.trunk = mlp_blocks(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at, spec.activation)
        ins = (self.backbone.dim, *spec.shared_layers[:-1])
        # U[j][t], V[j][t]: task t's own factors at layer j (one Parameter each: only task t's loss reaches them);
        # the first layer's V waits for the input width when it is read at the first forward (like nn.LazyLinear)
        self.U = nn.ModuleList(nn.ParameterList(nn.Parameter(torch.zeros(w, cfg.rank)) for _ in spec.tasks)
                               for w in spec.shared_layers)
        self.V = nn.ModuleList(nn.ParameterList(nn.UninitializedParameter() if w_in is None else
                                                nn.Parameter(initial_v(w_in, cfg.rank)) for _ in spec.tasks)
                               for w_in in ins)
        self.out_dim = spec.shared_layers[-1]

    def task_weight(self, task: int, layer: int) -> torch.Tensor:
        """W_j + U_t^j V_t^jᵀ, the weight task t's layer j applies (w_j × w_{j−1}, as nn.Linear stores it)."""
        return self.trunk[layer][0].weight + self.U[layer][task] @ self.V[layer][task].T

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        for v in self.V[0]:
            if isinstance(v, nn.parameter.UninitializedParameter):
                with torch.no_grad():  # in place: an optimizer built before this forward holds this very Parameter
                    v.materialize((z.shape[-1], self.U[0][0].shape[-1]))
                    v.copy_(initial_v(z.shape[-1], self.U[0][0].shape[-1]))
        h = torch.stack([z] * len(self.tasks))  # T×B×w
        for j, block in enumerate(self.trunk):
            delta = torch.einsum("tbi,tir,tor->tbo", h, torch.stack(list(self.V[j])), torch.stack(list(self.U[j])))
            h = block[1:](block[0](h) + delta)
        return {t: h[k] for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.trunk.parameters()]

    def last_shared_parameters(self):
        return list(linear_layers(self.trunk)[-1].parameters())


@ARCHITECTURES.register("low-rank", config_cls=LowRankConfig)
def build(cfg: LowRankConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> LowRank:
    return LowRank(cfg or LowRankConfig(), spec, make_backbone)
