"""What both Hat Swap networks share: a backbone, a shared trunk, one head per task, per-sample routing.

Subclasses set `backbone`, `shared`, `heads` (ModuleList), `head_dims` (each head's flattened output width) and
`frozen_backbone`, plus `PAD`: the value of the columns past a task's own width in forward's B × max-width output.
"""

from __future__ import annotations

import contextlib

import torch
from avalanche.models import MultiTaskModule


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


class SharedTrunkNet(MultiTaskModule):
    # Set by benchmark.device on CUDA (bf16). Every public entry point (forward, features, head) autocasts and
    # returns float32, so callers (losses, LwF's hook on `shared`) never mix dtypes.
    autocast_dtype: torch.dtype | None = None
    PAD: float = 0.0

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:  # a frozen backbone also keeps its dropout/norm statistics fixed
            self.backbone.eval()
        return self

    def _autocast(self, x: torch.Tensor):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.autocast_dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared representation every head reads."""
        with self._autocast(x):
            return self.shared(self.backbone(x)).float()

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        """Task `task`'s raw output, flattened: B × head_dims[task]."""
        with self._autocast(feats):
            return self.heads[task](feats).float().flatten(1)

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor | dict[int, torch.Tensor]:
        """B × max-width routed output; `task_labels=None`: every head, {task: B × head_dims[task]} (Avalanche's
        MultiTaskModule convention, which its LwF uses to distil all old heads)."""
        feats = self.features(x)
        if task_labels is None:
            return {t: self.head(t, feats) for t in range(len(self.heads))}
        return route(task_labels, feats, self.head_dims, self.PAD, lambda t, mask: self.head(t, feats[mask]))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.head(task_label, self.features(x))
