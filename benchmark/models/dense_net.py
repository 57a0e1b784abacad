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

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.dense.kinds import KINDS
from benchmark.models.trunk import SharedTrunkNet

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


class DenseHatSwapNet(SharedTrunkNet):  # PAD 0: packed rows (benchmark/dense/kinds.py) are zero-padded
    def __init__(self, backbone: nn.Module, tasks: list, frozen_backbone: bool = False):
        super().__init__()
        self.backbone, self.frozen_backbone, self.tasks = backbone, frozen_backbone, list(tasks)
        self.shared = nn.Sequential(nn.Conv2d(backbone.out_channels, SHARED_CHANNELS, 3, padding=1),
                                    nn.BatchNorm2d(SHARED_CHANNELS), nn.ReLU())
        self.heads = nn.ModuleList(make_head(t, SHARED_CHANNELS) for t in tasks)
        self.head_dims = [KINDS[t.kind].output_len(t) for t in tasks]
        if frozen_backbone:
            self.backbone.requires_grad_(False)
        # NHWC weights make every convolution run channels-last (oneDNN on the CPU, tensor cores on a GPU): a
        # training step of the offline dense profile's CNN took 1.15–1.25× less time on 2 idle CPU cores (measured
        # side by side). Inputs stay NCHW; the first convolution converts them.
        self.to(memory_format=torch.channels_last)

    def distill(self, task: int, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """LwF's term for one old task, in that task's kind (pixel-wise KL, class KL + box L2, or logit KL)."""
        spec = self.tasks[task]
        return KINDS[spec.kind].distill(student, teacher, spec, temperature)
