"""Multi-gate Mixture-of-Experts (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts").

E experts f_e (each an MLP of `shared_layers`) read the backbone's pooled features z (B×D); task t has its own
softmax gate over the experts, computed from the same z:

    g_t(z) = softmax(W_t z) ∈ Δ^E (B×E),      rep_t = Σ_e g_t(z)_e · f_e(z)      (B×w)
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import linear_layers, mlp
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


class MMoE(Architecture):
    def __init__(self, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        if spec.num_experts < 1:
            raise UserError(f"mmoe needs at least one expert, got --experts {spec.num_experts}")
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        self.experts = nn.ModuleList(mlp(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at)
                                     for _ in range(spec.num_experts))
        self.gates = nn.ModuleList(nn.Linear(self.backbone.dim, spec.num_experts) for _ in spec.tasks)
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


@ARCHITECTURES.register("mmoe")
def build(cfg, spec: ArchSpec, make_backbone: BackboneFactory) -> MMoE:
    return MMoE(spec, make_backbone)
