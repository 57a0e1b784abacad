"""The Hat Swap network for the dense suite (seed 004): feature-map backbone → shared 3×3 conv → one head per task.

    backbone   B×3×S×S → B×C×h×w (ViT patch tokens, or EfficientNet-B0 + FPN: benchmark/models/feature_maps.py)
    shared     3×3 conv C → 64, BatchNorm, ReLU (what LwF's hook and every head read)
    heads      segmentation    1×1 conv → classes, bilinear upsampling to S×S
               detection       adaptive average pool to the G×G grid, 1×1 conv → (tx, ty, tw, th, obj, classes)
               classification  global average pooling, linear → classes

Outputs are packed (benchmark/dense/kinds.py): forward(x, task_labels) returns B × max-output-length, each row
its own task's flattened head output, zero-padded; each sample goes through its own task's head only.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from avalanche.models import MultiTaskModule
from torch import nn

from benchmark.dense.kinds import KINDS

SHARED_CHANNELS = 64


class SegHead(nn.Module):
    def __init__(self, channels: int, n_classes: int, size: int):
        super().__init__()
        self.conv, self.size = nn.Conv2d(channels, n_classes, 1), size

    def forward(self, f):
        return F.interpolate(self.conv(f), size=(self.size, self.size), mode="bilinear", align_corners=False)


class DetHead(nn.Module):
    def __init__(self, channels: int, n_classes: int, grid: int):
        super().__init__()
        self.conv, self.grid = nn.Conv2d(channels, 5 + n_classes, 1), grid

    def forward(self, f):
        if f.shape[-1] != self.grid or f.shape[-2] != self.grid:
            f = F.adaptive_avg_pool2d(f, self.grid)
        return self.conv(f)


class ClsHead(nn.Module):
    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, f):
        return self.fc(f.mean(dim=(2, 3)))


def make_head(spec, channels: int) -> nn.Module:
    info = spec.info
    if spec.kind == "segmentation":
        return SegHead(channels, info["num_classes"], info["image_size"])
    if spec.kind == "detection":
        return DetHead(channels, info["num_classes"], info["grid"])
    return ClsHead(channels, info["num_classes"])


class DenseHatSwapNet(MultiTaskModule):
    autocast_dtype: torch.dtype | None = None  # set by benchmark.device on CUDA, as for HatSwapNet

    def __init__(self, backbone: nn.Module, tasks: list, frozen_backbone: bool = False):
        super().__init__()
        self.backbone, self.frozen_backbone, self.tasks = backbone, frozen_backbone, list(tasks)
        self.shared = nn.Sequential(nn.Conv2d(backbone.out_channels, SHARED_CHANNELS, 3, padding=1),
                                    nn.BatchNorm2d(SHARED_CHANNELS), nn.ReLU())
        self.heads = nn.ModuleList(make_head(t, SHARED_CHANNELS) for t in tasks)
        self.head_dims = [KINDS[t.kind].output_len(t) for t in tasks]
        if frozen_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def _autocast(self, x):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.autocast_dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×S×S → B×64×h×w: the shared map every head reads."""
        with self._autocast(x):
            return self.shared(self.backbone(x)).float()

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        """Task `task`'s flattened raw output, B × its output length."""
        with self._autocast(feats):
            return self.heads[task](feats).float().flatten(1)

    def distill(self, task: int, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """LwF's term for one old task, in that task's kind (pixel-wise KL, class KL + box L2, or logit KL)."""
        spec = self.tasks[task]
        return KINDS[spec.kind].distill(student, teacher, spec, temperature)

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        if isinstance(task_labels, int):
            task_labels = torch.full((x.shape[0],), task_labels, device=x.device)
        feats = self.features(x)
        out = feats.new_zeros((x.shape[0], max(self.head_dims)))
        for t in torch.unique(task_labels).tolist():
            mask = task_labels == t
            out[mask, : self.head_dims[t]] = self.head(t, feats[mask])
        return out

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.head(task_label, self.features(x))
