"""The DINO projection head (Caron et al. 2021, §3.1 and their `DINOHead`) and the backbone + head network.

    h = MLP(z):  Linear(D, H) → GELU → Linear(H, H) → GELU → Linear(H, b)       (3 layers, bottleneck b)
    u = h / ‖h‖₂
    g(z) = W u,  row k of W = v_k / ‖v_k‖₂                                       (weight-normalised, K prototypes)

The last layer is weight normalisation with its gain fixed at 1 (DINO's `norm_last_layer=True`): each score is the
cosine between u and a prototype, which keeps training stable with a ViT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DinoHead(nn.Module):
    """B×D features → B×K prototype scores (module docstring)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):  # DINO's init: truncated normal, std 0.02, zero bias
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))  # the v_k
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = F.normalize(self.mlp(z), dim=-1)
        return u @ F.normalize(self.prototypes, dim=-1).T


class DinoNet(nn.Module):
    """A backbone (B×C×h×w → B×D; any h×w the ViT takes) and its head. forward(views) runs the views in groups
    of one resolution (DINO's MultiCropWrapper) and returns one B×K tensor per view, in order."""

    def __init__(self, backbone: nn.Module, head: DinoHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        out, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            scores = self.head(self.backbone(torch.cat(views[start:end])))
            out.extend(scores.chunk(end - start))
            start = end
        return out
