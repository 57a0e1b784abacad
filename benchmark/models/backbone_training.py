"""What of the backbone trains, and at which learning rate.

Modes (`--backbone-mode`):
  finetune  every backbone parameter trains;
  frozen    none does, and the backbone stays in eval mode (so its output is a fixed function of the input and
            can be cached: see benchmark/harness/feature_cache.py);
  last-k    only the last `--last-k` transformer blocks and the final norm after them train (the norm maps those
            blocks' output to the features, so it belongs to them); the patch embedding and earlier blocks are
            frozen.

Optimizer: Adam (`--optimizer adamw`: AdamW) with two parameter groups, backbone at `--backbone-lr` (0 = `--lr`)
and everything else at `--lr`. Adam's update is per parameter, so with equal rates this is the same update as one group.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import Backbone, require_tokens

MODES = ("finetune", "frozen", "last-k")


def apply_last_k(backbone: Backbone, k: int) -> None:
    """Freeze all of the backbone except its last k blocks and the norm after them (a token backbone's `blocks` and
    `norm`: benchmark/models/backbone.py; the registered ViTs' pooled-output norm, timm's `fc_norm`, is an
    nn.Identity)."""
    blocks = require_tokens(backbone, "--backbone-mode last-k").blocks
    if not 1 <= k <= len(blocks):
        raise UserError(f"--last-k {k}: the backbone has {len(blocks)} blocks; pass 1..{len(blocks)}")
    backbone.requires_grad_(False)
    for block in list(blocks)[-k:]:
        block.requires_grad_(True)
    backbone.norm.requires_grad_(True)


def build_optimizer(model: nn.Module, lr: float, backbone_lr: float, weight_decay: float,
                    kind: str = "adam") -> torch.optim.Optimizer:
    """Adam (kind="adamw": AdamW) over the trainable parameters: group 0 = backbone at backbone_lr (0 → lr),
    group 1 = the rest at lr."""
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) in backbone_ids], "lr": backbone_lr or lr},
              {"params": [p for p in trainable if id(p) not in backbone_ids], "lr": lr}]
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    return cls([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)
