"""Multi-Task Attention Network (Liu et al. 2019, "End-to-End Multi-Task Learning with Attention").

A shared trunk runs token-wise over the backbone's feature map (ViT: patch tokens; CNN: spatial positions), so each
layer j gives u^j: B×N×w_j. Task t owns one soft attention mask per layer, computed from the shared features and its
own attended features of the layer below, and applied element-wise to the shared features:

    a_t^1 = σ(g_t^1(u^1)),                         â_t^1 = a_t^1 ⊙ u^1
    a_t^j = σ(g_t^j([u^j ; f_t^j(â_t^{j−1})])),    â_t^j = a_t^j ⊙ u^j        (j > 1)
    rep_t = pool(â_t^L): mean over tokens (B×w_L) or, with --pooling flatten, concatenated (B×N·w_L)

g_t^j = Linear-ReLU-Linear (the paper's 1×1 conv-BN-ReLU, conv-BN-sigmoid, as per-token linear maps); f_t^j is a
per-task linear projection to the next width (the paper shares a 3×3 conv there, to change resolution, which a
token map does not need).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.models.layers import linear_layers, mlp_blocks
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


def _mask_net(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.Sigmoid())


class MTAN(Architecture):
    def __init__(self, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        widths = spec.shared_layers
        self.trunk = mlp_blocks(self.backbone.token_dim, widths, spec.dropout, spec.dropout_at,
                                spec.activation)
        self.masks = nn.ModuleList(
            nn.ModuleList(_mask_net(w if j == 0 else 2 * w, w) for j, w in enumerate(widths)) for _ in spec.tasks)
        self.projections = nn.ModuleList(
            nn.ModuleList(nn.Linear(widths[j - 1], w) for j, w in enumerate(widths) if j > 0) for _ in spec.tasks)
        self.out_dim = self.backbone.pooled_width(widths[-1])
        # token vectors flattened into each task's vector: a map-reading head scales its first layer's step by it
        # (benchmark/mtl/task_heads.py, FanInScale)
        self.out_tokens = self.backbone.n_tokens if self.backbone.pooling == "flatten" else 1

    def attention_masks(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Every task's masks a_t^j (B×N×w_j), for inspection."""
        return self._run(x)[1]

    def _run(self, x):
        u = self.backbone(x)
        attended = [None] * len(self.tasks)
        masks = {t: [] for t in self.tasks}
        for j, block in enumerate(self.trunk):
            u = block(u)
            for k, t in enumerate(self.tasks):
                inp = u if j == 0 else torch.cat([u, self.projections[k][j - 1](attended[k])], dim=-1)
                a = self.masks[k][j](inp)
                masks[t].append(a)
                attended[k] = a * u
        return {t: self.backbone.pooled(attended[k]) for k, t in enumerate(self.tasks)}, masks

    def forward(self, x):
        return self._run(x)[0]

    def shared_parameters(self):
        return [*self.backbone.parameters(), *self.trunk.parameters()]

    def last_shared_parameters(self):
        return list(linear_layers(self.trunk)[-1].parameters())


@ARCHITECTURES.register("mtan")
def build(cfg, spec: ArchSpec, make_backbone: BackboneFactory) -> MTAN:
    return MTAN(spec, make_backbone)
