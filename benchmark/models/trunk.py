"""The shared trunk between backbone and heads, one builder per feature form, and per-sample routing.

    vector  B×D features → [Linear, ReLU, Dropout] per `--hidden` width (the Hat Swap network's shared layers)
    map     B×C×h×w maps → 3×3 conv C → 64, BatchNorm, ReLU (the dense suite's shared conv)
"""

from __future__ import annotations

import torch
from torch import nn

SHARED_CHANNELS = 64


def route(task_labels, like: torch.Tensor, head_dims: list[int], pad: float, run_head) -> torch.Tensor:
    """Per-sample routing: B × max(head_dims), the rows of task t = run_head(t, mask of those rows), the columns
    past task t's width = `pad`. `task_labels` is a tensor of B labels or one int; `like` gives B, dtype, device."""
    n = like.shape[0]
    if isinstance(task_labels, int):
        task_labels = torch.full((n,), task_labels, device=like.device)
    out = like.new_full((n, max(head_dims)), pad)
    for t in torch.unique(task_labels).tolist():
        mask = task_labels == t
        out[mask, : head_dims[t]] = run_head(t, mask)
    return out


def vector_trunk(feat_dim: int, hidden: tuple[int, ...], dropout: float) -> tuple[nn.Sequential, int]:
    """→ (shared layers, their output width)."""
    layers, width = [], feat_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers), width


def map_trunk(channels: int) -> tuple[nn.Sequential, int]:
    """→ (shared 3×3 conv block, its output channels). The conv has no bias: the BatchNorm after it subtracts each
    channel's batch mean, so in training a bias has no effect and its gradient is rounding noise, which Adam
    normalises into steps of ~lr; EWC and MAS (importance measured in eval mode, where the bias does act) then pull on
    that noise, and their runs differed by up to 10 % between CPU kinds. BatchNorm's own shift is the bias."""
    return nn.Sequential(nn.Conv2d(channels, SHARED_CHANNELS, 3, padding=1, bias=False),
                         nn.BatchNorm2d(SHARED_CHANNELS), nn.ReLU()), SHARED_CHANNELS
