"""Hand-made task lists and networks for model and strategy tests."""

from __future__ import annotations

from benchmark.models.hatswap_net import build_net
from benchmark.tasks import TaskSpec


def label_tasks(widths) -> list[TaskSpec]:
    """One classification task per width: binary for 2, multiclass otherwise."""
    return [TaskSpec(f"t{i}", "binary") if w == 2 else TaskSpec(f"t{i}", "multiclass", {"num_classes": w})
            for i, w in enumerate(widths)]


def vector_net(backbone, feat_dim: int, hidden, dropout: float, widths, frozen_backbone: bool = False):
    """The Hat Swap network on a vector backbone with one classification head per width."""
    return build_net(backbone, label_tasks(widths), feat_dim, tuple(hidden), dropout, frozen_backbone)
