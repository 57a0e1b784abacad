"""A small CNN backbone for 28/32 px inputs: the cheap alternative to `vit_tiny` (and the multi-task default).

Shapes: B×C×H×W → `forward_features` → B×channels[-1]×(H/2^k)×(W/2^k) (k = len(channels), one 2×2 max-pool per
block) → `forward` → B×channels[-1] (global average pool), the same contract as `vit_tiny`'s pooled output.
Multi-task models read `forward_features` and pool the map themselves (`hatswap mtl --pooling mean|flatten`,
benchmark/models/layers.py): averaging 7×7 positions of 32 channels keeps too little for a 10-way classifier or a pixel
decoder (validation numbers in the README's multi-task section), so the `mtl` profile flattens it.

Dropout (the multi-task experiments' "Dropout layer (0.2) after each Conv layer", their `mtl-conv` profile):
Dropout(p) after every block's max-pool (`dropout_at` 'each'), after the last block's only ('last': the document's
"single Dropout layer"), or nowhere ('none'); p = 0 adds no module, so the default network is built module for
module as before (same state_dict keys, same initial weights at a seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import BuiltBackbone
from benchmark.models.layers import DROPOUT_AT
from benchmark.registry import BACKBONES


@dataclass(frozen=True)
class SmallCnnConfig:
    channels: tuple[int, ...] = (16, 32)  # one conv3×3-GroupNorm-ReLU-maxpool block per entry: the depth
    dropout: float = 0.0  # p of the Dropout after the blocks `dropout_at` names; 0 = no dropout module
    dropout_at: str = field(default="each", metadata={"choices": DROPOUT_AT})  # none | last | each (block)

    def __post_init__(self):
        if not self.channels or any(c < 1 for c in self.channels):
            raise UserError(f"--small_cnn.channels needs positive integers, got {self.channels!r}")
        if not 0 <= self.dropout < 1 or self.dropout_at not in DROPOUT_AT:
            raise UserError(f"--small_cnn.dropout must be in [0, 1) and --small_cnn.dropout-at one of {DROPOUT_AT}; "
                            f"got {self.dropout!r}, {self.dropout_at!r}")


class SmallCnn(nn.Module):
    feature_layout, num_prefix_tokens = "map", 0  # the backbone contract (benchmark/models/backbone.py)

    def __init__(self, in_chans: int, channels: tuple[int, ...], dropout: float = 0.0, dropout_at: str = "each"):
        super().__init__()
        layers, width = [], in_chans
        for k, c in enumerate(channels):
            # GroupNorm, not BatchNorm: no running statistics, so a frozen copy (progressive columns) stays frozen
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.GroupNorm(min(4, c), c), nn.ReLU(), nn.MaxPool2d(2)]
            if dropout > 0 and (dropout_at == "each" or (dropout_at == "last" and k == len(channels) - 1)):
                layers.append(nn.Dropout(dropout))
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
    model = SmallCnn(in_chans, tuple(cfg.channels), cfg.dropout, cfg.dropout_at)
    dropout = f", dropout {cfg.dropout:g} {cfg.dropout_at}" if cfg.dropout > 0 and cfg.dropout_at != "none" else ""
    identity = {"weights": "random init", "arch": f"small_cnn {list(cfg.channels)}{dropout}"}
    return BuiltBackbone(model, model.num_features, identity)
