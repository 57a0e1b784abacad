"""Image classification from a feature map (the dense suite's third task).

    head    global average pooling, linear → classes
    target  payload [label]
    output  C logits
    loss    cross-entropy;  LwF  T²·KL on the logits (batch mean, as on the binary stream)
    metric  top-1 (primary) and top-5 accuracy
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from benchmark.registry import KINDS
from benchmark.tasks.distill import kl_t2
from benchmark.tasks.kind import CERTAIN
from benchmark.tasks.packed import PackedKind
from benchmark.tasks.reference import Vote


@dataclass(frozen=True)
class ClassificationParams:
    num_classes: int


class ClsHead(nn.Module):
    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, f):
        return self.fc(f.mean(dim=(2, 3)))


@KINDS.register("classification", config_cls=ClassificationParams)
class Classification(PackedKind):
    primary = "top1"
    reference = Vote(labels=lambda target: target[:, 0].long(), as_target=lambda labels: labels[:, None].float())

    def make_head(self, spec, width: int) -> nn.Module:
        return ClsHead(width, spec.params.num_classes)

    def shape(self, spec):
        return (spec.params.num_classes,)

    def payload_len(self, spec) -> int:
        return 1

    def pack_target(self, target: dict, spec) -> torch.Tensor:
        return torch.tensor([float(target["label"])])

    def unpack_target(self, y: torch.Tensor, spec) -> dict:
        return {"label": int(y[0])}

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """Payload rows → the packed output that predicts exactly them (one-hot logits)."""
        return CERTAIN * F.one_hot(y[:, 0].long(), spec.params.num_classes).float()

    def loss(self, o, y, spec):
        return F.cross_entropy(self.unpack_output(o, spec), y[:, 0].long())

    def distill(self, student, teacher, spec, temperature: float):
        """Equal to benchmark.tasks.distill.kd_loss (batchmean), as on the binary stream."""
        return kl_t2(self.unpack_output(student, spec), self.unpack_output(teacher, spec), temperature).mean()

    def metric(self, spec):
        return _ClsMetric(self, spec)


class _ClsMetric:
    def __init__(self, kind: Classification, spec):
        c = spec.params.num_classes
        self.kind, self.spec = kind, spec
        self.top1 = MulticlassAccuracy(num_classes=c, top_k=1, average="micro")
        self.top5 = MulticlassAccuracy(num_classes=c, top_k=min(5, c), average="micro")

    def update(self, o, y):
        logits, label = self.kind.unpack_output(o, self.spec), y[:, 0].long()
        for m in (self.top1, self.top5):
            m.to(o.device).update(logits, label)

    def compute(self) -> dict:
        top1 = float(self.top1.compute())
        return {"top1": top1, "top5": float(self.top5.compute())}

    def reset(self):
        self.top1.reset()
        self.top5.reset()
