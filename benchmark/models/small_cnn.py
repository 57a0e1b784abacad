"""A small CNN backbone for 28/32 px inputs: the cheap alternative to `vit_tiny` (and the multi-task default).

Shapes: B×C×H×W → `forward_features` → B×channels[-1]×(H/2^k)×(W/2^k) (k = len(channels), one 2×2 max-pool per
block) → `forward` → B×channels[-1] (global average pool), the same contract as `vit_tiny`'s pooled output.
Multi-task models read `forward_features` and pool the map themselves (`hatswap mtl --pooling mean|flatten`,
benchmark/models/layers.py): averaging 7×7 positions of 32 channels keeps too little for a 10-way classifier or a pixel
decoder (validation numbers in the README's multi-task section), so the `mtl` profile flattens it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import BuiltBackbone
from benchmark.registry import BACKBONES


@dataclass(frozen=True)
class SmallCnnConfig:
    channels: tuple[int, ...] = (16, 32)  # one conv3×3-GroupNorm-ReLU-maxpool block per entry

    def __post_init__(self):
        if not self.channels or any(c < 1 for c in self.channels):
            raise UserError(f"--small_cnn.channels needs positive integers, got {self.channels!r}")


class SmallCnn(nn.Module):
    feature_layout, num_prefix_tokens = "map", 0  # the backbone contract (benchmark/models/backbone.py)

    def __init__(self, in_chans: int, channels: tuple[int, ...]):
        super().__init__()
        layers, width = [], in_chans
        for c in channels:
            # GroupNorm, not BatchNorm: no running statistics, so a frozen copy (progressive columns) stays frozen
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.GroupNorm(min(4, c), c), nn.ReLU(), nn.MaxPool2d(2)]
            width = c
        self.blocks = nn.Sequential(*layers)
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


@BACKBONES.register("small_cnn", config_cls=SmallCnnConfig)
def small_cnn(cfg: SmallCnnConfig, *, image_size: int, in_chans: int, weights: str = "") -> BuiltBackbone:
    """→ the CNN (B×C×H×W → B×channels[-1]; its map B×channels[-1]×h×w), its width, its weights identity."""
    if weights:
        raise UserError("--backbone-weights applies to pretrained backbones; small_cnn is trained from scratch "
                        "(drop the flag)")
    if image_size < 2 ** len(cfg.channels):
        raise UserError(f"image size {image_size} is too small for {len(cfg.channels)} pooling blocks; "
                        f"pass fewer --small_cnn.channels")
    model = SmallCnn(in_chans, tuple(cfg.channels))
    identity = {"weights": "random init", "arch": f"small_cnn {list(cfg.channels)}"}
    return BuiltBackbone(model, model.num_features, identity)
