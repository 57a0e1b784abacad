"""Group-lasso sharing: task-specific columns whose choice of shared features is coupled across tasks by an ℓ2,1
penalty (multi-task feature learning: Obozinski, Taskar & Jordan 2006, "Multi-task feature selection"; Argyriou,
Evgeniou & Pontil 2007, "Multi-task feature learning").

Each task has its own MLP of `shared_layers` (a column) over the shared backbone's pooled features z (B×D). The
first layers' weights, stacked over tasks, form groups — one per input feature d, holding every task's weights that
read z_d:

    penalty = λ · Σ_d ‖ [W_1[:, d]; W_2[:, d]; …; W_T[:, d]] ‖₂          (W_t: task t's first-layer weight, w_1×D)

ℓ2 within a group, ℓ1 across groups: a feature is either used by the tasks together or driven to zero for all of
them — what the tasks share is learnt. Only the first layer is grouped: it is the one whose inputs are common to the
tasks (a deeper unit i of column s has nothing to do with unit i of column t). The penalty is added to the weighted
task losses (`MultiTaskModel.compute_loss` / `backward`); λ = `strength`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import mlp
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class GroupLassoConfig:
    strength: float = 1e-3  # λ

    def __post_init__(self):
        if self.strength < 0:
            raise UserError(f"--group-lasso.strength must be ≥ 0, got {self.strength}")


def l21(weights: list[torch.Tensor]) -> torch.Tensor:
    """Σ_d ‖ stacked column d of every weight ‖₂ (each weight out×D, as nn.Linear stores it)."""
    return torch.cat(weights, dim=0).norm(dim=0).sum()


class GroupLasso(Architecture):
    def __init__(self, cfg: GroupLassoConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks, self.strength = spec.tasks, cfg.strength
        self.backbone = make_backbone()
        self.columns = nn.ModuleList(mlp(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at,
                                         spec.activation) for _ in spec.tasks)
        self.out_dim = spec.shared_layers[-1]

    def first_weights(self) -> list[torch.Tensor]:
        return [column[0][0].weight for column in self.columns]

    def group_norms(self) -> torch.Tensor:
        """‖group d‖₂ for every input feature d (D): 0 = a feature no task reads."""
        return torch.cat(self.first_weights(), dim=0).norm(dim=0)

    def penalty(self) -> torch.Tensor | None:
        return self.strength * l21(self.first_weights()) if self.strength else None

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        return {t: column(z) for t, column in zip(self.tasks, self.columns, strict=True)}

    def shared_parameters(self):
        return list(self.backbone.parameters())

    def last_shared_parameters(self):
        return self.backbone.last_parameters()


@ARCHITECTURES.register("group-lasso", config_cls=GroupLassoConfig)
def build(cfg: GroupLassoConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> GroupLasso:
    return GroupLasso(cfg or GroupLassoConfig(), spec, make_backbone)
