"""Semantic segmentation from a feature map (the dense suite's first task).

    head    1×1 conv → classes, bilinear upsampling to S×S
    target  payload [mask row-major, S·S]  (class index, ignore_index = void)
    output  C×S×S logits, channel-first
    loss    cross-entropy over the non-void pixels
    LwF     pixel-wise T²·KL over classes, averaged over pixels and batch
    metric  mIoU, VOC protocol: one confusion matrix over the whole split, IoU per class, mean over present classes
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from benchmark.registry import KINDS
from benchmark.tasks.distill import kl_t2
from benchmark.tasks.kind import CERTAIN
from benchmark.tasks.packed import PackedKind


@dataclass(frozen=True)
class SegmentationParams:
    num_classes: int
    image_size: int  # S: masks and outputs are S×S
    ignore_index: int = 255  # void pixels (VOC's label when the split declares none)


class SegHead(nn.Module):
    def __init__(self, channels: int, n_classes: int, size: int):
        super().__init__()
        self.conv, self.size = nn.Conv2d(channels, n_classes, 1), size

    def forward(self, f):
        return F.interpolate(self.conv(f), size=(self.size, self.size), mode="bilinear", align_corners=False)


@KINDS.register("segmentation", config_cls=SegmentationParams)
class Segmentation(PackedKind):
    primary = "miou"

    def make_head(self, spec, width: int) -> nn.Module:
        return SegHead(width, spec.params.num_classes, spec.params.image_size)

    def shape(self, spec):
        s = spec.params.image_size
        return (spec.params.num_classes, s, s)

    def payload_len(self, spec) -> int:
        return spec.params.image_size ** 2

    def pack_target(self, target: dict, spec) -> torch.Tensor:
        s = spec.params.image_size
        mask = torch.as_tensor(target["mask"])
        if mask.shape != (s, s):
            raise ValueError(f"{spec.name}: mask of shape {tuple(mask.shape)}, expected {(s, s)}")
        return mask.flatten().float()

    def unpack_target(self, y: torch.Tensor, spec) -> dict:
        s = spec.params.image_size
        return {"mask": y[: s * s].reshape(s, s).long()}

    def masks(self, y: torch.Tensor, spec) -> torch.Tensor:
        s = spec.params.image_size
        return y[:, : s * s].reshape(-1, s, s).long()

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """Payload rows → the packed output whose argmax is their mask (void pixels → class 0)."""
        mask = self.masks(y, spec)
        mask = mask.where(mask != spec.params.ignore_index, 0)
        return CERTAIN * F.one_hot(mask, spec.params.num_classes).permute(0, 3, 1, 2).float().flatten(1)

    def loss(self, o, y, spec):
        target = self.masks(y, spec)
        ignore = spec.params.ignore_index
        # = the mean over non-void pixels (F.cross_entropy's), without its NaN when every pixel is void and
        # without a host sync to test for that
        total = F.cross_entropy(self.unpack_output(o, spec), target, ignore_index=ignore, reduction="sum")
        return total / (target != ignore).sum().clamp(min=1)

    def distill(self, student, teacher, spec, temperature: float):
        """Pixel-wise T²·KL over classes, averaged over pixels and batch."""
        return kl_t2(self.unpack_output(student, spec), self.unpack_output(teacher, spec), temperature).mean()

    def metric(self, spec):
        return _SegMetric(self, spec)


class _SegMetric:
    """mIoU, VOC protocol: one confusion matrix over the whole split, IoU per class, mean over present classes."""

    def __init__(self, kind: Segmentation, spec):
        self.kind, self.spec = kind, spec
        self.m = MulticlassJaccardIndex(num_classes=spec.params.num_classes, average="macro",
                                        ignore_index=spec.params.ignore_index)

    def update(self, o, y):
        self.m.to(o.device)
        self.m.update(self.kind.unpack_output(o, self.spec).argmax(1), self.kind.masks(y, self.spec))

    def compute(self) -> dict:
        miou = float(self.m.compute())
        return {"miou": miou}

    def reset(self):
        self.m.reset()
