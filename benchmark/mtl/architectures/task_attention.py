"""Task-conditioned attention pooling: each task chooses *where* to read the shared feature map, then a shared MLP
(attention pooling with a learnt query, as Lee et al. 2019's "pooling by multi-head attention" in the Set
Transformer, with one query per task; the task-specific attention of Liu et al.'s MTAN, done over positions).

The backbone gives tokens u (B×N×D: ViT patches or CNN positions). Keys are a shared linear map; task t owns a
query q_t ∈ ℝ^d and attends over the N positions:

    a_t = softmax_n( (u W_k) q_t / √d )        (B×N, sums to 1 over positions: `attention`)
    rep_t = MLP( Σ_n a_t[:, n] · u_n )          (the MLP of `shared_layers` is shared by the tasks)

(A value map W_v would be redundant: the MLP's first linear layer commutes with the weighted sum.)

How it differs from MTAN (architecture 'mtan'): MTAN gives each task an element-wise sigmoid mask over every shared
layer's features (channel and position gated independently, no competition, at every depth); here each task gets one
softmax distribution over positions (positions compete for a task's attention), on the backbone's output only, and
everything after it is shared. With a vector input (one token) the attention is trivially 1 and this is
shared-bottom.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import linear, linear_layers, mlp
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class TaskAttentionConfig:
    key_dim: int = 32  # d

    def __post_init__(self):
        if self.key_dim < 1:
            raise UserError(f"--task-attention.key-dim must be ≥ 1, got {self.key_dim}")


class TaskAttention(Architecture):
    def __init__(self, cfg: TaskAttentionConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        D = self.backbone.token_dim
        self.keys = linear(D, cfg.key_dim, bias=False)  # lazy when the input width is read at the first forward
        self.queries = nn.ParameterList(nn.Parameter(torch.randn(cfg.key_dim)) for _ in spec.tasks)  # q_t
        self.trunk = mlp(D, spec.shared_layers, spec.dropout, spec.dropout_at, spec.activation)
        self.out_dim = spec.shared_layers[-1]

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens B×N×D → a: T×B×N, each task's distribution over the positions."""
        q = torch.stack(list(self.queries))
        scores = torch.einsum("bnd,td->tbn", self.keys(tokens), q) / q.shape[1] ** 0.5
        return scores.softmax(dim=-1)

    def forward(self, x):
        u = self.backbone(x)
        pooled = torch.einsum("tbn,bnd->tbd", self.attention(u), u)
        return {t: self.trunk(pooled[k]) for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.keys.parameters(), *self.trunk.parameters()]

    def last_shared_parameters(self):
        return list(linear_layers(self.trunk)[-1].parameters())


@ARCHITECTURES.register("task-attention", config_cls=TaskAttentionConfig)
def build(cfg: TaskAttentionConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> TaskAttention:
    return TaskAttention(cfg or TaskAttentionConfig(), spec, make_backbone)
