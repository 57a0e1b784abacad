"""Multi-gate Mixture-of-Experts (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts").

E experts f_e (each an MLP of `shared_layers`) read the backbone's pooled features z (B×D); task t has its own
softmax gate over the experts, computed from the same z:

    g_t(z) = softmax(W_t z) ∈ Δ^E (B×E),      rep_t = Σ_e g_t(z)_e · f_e(z)      (B×w)

E = `num_experts` (`--experts 4`, the multi-task toolkit's `num_experts=4`; `--mmoe.num-experts`). The paper's gate is
that single linear map; `gate_layers` (`--mmoe.gate-layers 32`, the multi-task toolkit's
`gate_layers=[32]`) puts an MLP of those hidden widths before W_t: g_t(z) = softmax(W_t MLP_t(z)). The experts' widths
are `shared_layers` (the toolkit's `expert_layers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import linear, linear_layers, mlp
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class MMoEConfig:
    # hidden widths of each task's gating network; () = one linear map (the paper)
    gate_layers: tuple[int, ...] = field(default=(), metadata={"keyword": "gate_layers"})
    num_experts: int = field(default=4, metadata={"keyword": "num_experts", "config_key": "experts"})  # E

    def __post_init__(self):
        if self.num_experts < 1:
            raise UserError(f"mmoe needs at least one expert, got --experts {self.num_experts}")
        if any(w < 1 for w in self.gate_layers):
            raise UserError(f"--mmoe.gate-layers takes positive widths, got {list(self.gate_layers)}")


def _gate(in_dim: int | None, hidden: tuple[int, ...], n_experts: int, activation: str) -> nn.Module:
    if not hidden:
        return linear(in_dim, n_experts)
    return nn.Sequential(mlp(in_dim, hidden, activation=activation), nn.Linear(hidden[-1], n_experts))


class MMoE(Architecture):
    def __init__(self, cfg: MMoEConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        self.experts = nn.ModuleList(mlp(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at,
                                         spec.activation) for _ in range(cfg.num_experts))
        self.gates = nn.ModuleList(_gate(self.backbone.dim, cfg.gate_layers, cfg.num_experts, spec.activation)
                                   for _ in spec.tasks)
        self.out_dim = spec.shared_layers[-1]

    def gate_weights(self, z: torch.Tensor) -> torch.Tensor:
        """→ T×B×E, each row a distribution over experts."""
        return torch.stack([gate(z).softmax(dim=-1) for gate in self.gates])

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        experts = torch.stack([f(z) for f in self.experts], dim=1)  # B×E×w
        mixed = torch.einsum("tbe,bew->tbw", self.gate_weights(z), experts)
        return {t: mixed[k] for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.experts.parameters()]

    def last_shared_parameters(self):
        return [p for f in self.experts for p in linear_layers(f)[-1].parameters()]


@ARCHITECTURES.register("mmoe", config_cls=MMoEConfig, layers_keyword="expert_layers")
def build(cfg: MMoEConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> MMoE:
    return MMoE(cfg or MMoEConfig(), spec, make_backbone)
