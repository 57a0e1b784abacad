"""The DINO projection head (Caron et al. 2021, §3.1 and their `DINOHead`) and the backbone + head network.

    h = MLP(z):  Linear(D, H) → [BN] → GELU → Linear(H, H) → [BN] → GELU → Linear(H, b)   (3 layers, bottleneck b)
    u = h / ‖h‖₂
    g(z) = W u,  row k of W = v_k / ‖v_k‖₂                                       (weight-normalised, K prototypes)

The last layer is weight normalisation with its gain fixed at 1 (DINO's `norm_last_layer=True`): each score is the
cosine between u and a prototype, which keeps training stable with a ViT.

[BN] = batch normalisation over the batch (DINO's `use_bn_in_head`, their default for convnets), off by default. The
small ViT here starts with nearly the same class token for every image (mean pairwise cosine 0.86 on Fashion-MNIST),
and without BN the student maps every image to one u within ~20 steps, after which centering leaves the teacher
uniform (its entropy → ln K) and nothing is learnt; BN normalises each hidden unit over the batch, so images differ
in the head from the first step (mean cosine of u 0.17). The teacher then runs in train mode (batch statistics), as
in DINO, where the teacher is never put in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DinoHead(nn.Module):
    """B×D features → B×K prototype scores (module docstring)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int, batch_norm: bool = False):
        super().__init__()
        norm = (lambda: nn.BatchNorm1d(hidden_dim)) if batch_norm else nn.Identity
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), norm(), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 norm(), nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
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

    def forward(self, views: list[torch.Tensor], with_features: bool = False):
        """→ one B×K tensor per view; with_features: (those, one B×D backbone feature tensor per view)."""
        out, features, start = [], [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            z = self.backbone(torch.cat(views[start:end]))
            out.extend(self.head(z).chunk(end - start))
            features.extend(z.chunk(end - start))
            start = end
        return (out, features) if with_features else out
