"""Binary classification on a feature vector: 2 logits, cross-entropy, accuracy (the Hat Swap binary tasks; the
multi-task set's coarse and random tasks)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.registry import KINDS
from benchmark.tasks.kind import LabelKind


@dataclass(frozen=True)
class BinaryParams:
    num_classes: int = 2

    def __post_init__(self):
        if self.num_classes != 2:
            raise TypeError(f"a binary task has 2 classes, got num_classes={self.num_classes} (use kind multiclass)")


@KINDS.register("binary", config_cls=BinaryParams)
class Binary(LabelKind):
    pass
