"""K-way classification on a feature vector: K logits, cross-entropy, accuracy (the multi-task set's 10 classes)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.registry import KINDS
from benchmark.tasks.kind import LabelKind


@dataclass(frozen=True)
class MulticlassParams:
    num_classes: int

    def __post_init__(self):
        if self.num_classes < 2:
            raise TypeError(f"num_classes must be ≥ 2, got {self.num_classes}")


@KINDS.register("multiclass", config_cls=MulticlassParams)
class Multiclass(LabelKind):
    pass
