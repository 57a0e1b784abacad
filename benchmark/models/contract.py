"""The model contract: what the harness, the feature cache and every strategy may rely on in a model.

Two implementers: `HatSwapNet` (benchmark/models/hatswap_net.py) and the multi-task toolkit's `MultiTaskModel`
(benchmark/mtl/multi_head.py, every architecture); `--architecture` chooses (the MODELS registry). Strategies are
typed against `MultiHeadModel`, not against a class, and tests check both implementations against this Protocol.
A strategy that needs more than this
(say, a regulariser over `shared`) reads only these names.
"""

from __future__ import annotations

import contextlib
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from benchmark.models.trunk import route
from benchmark.tasks import kind_of


@runtime_checkable
class MultiHeadModel(Protocol):
    backbone: nn.Module  # images → features (B×D vectors, or B×C×h×w maps when `feature_form` is "map")
    shared: nn.Module  # features → the shared representation every head reads (LwF hooks its output)
    heads: nn.ModuleList | nn.ModuleDict  # one output layer per task, in task-id order, built by the task's kind
    head_dims: list[int]  # each head's flattened output width
    tasks: list  # the TaskSpecs, in task-id order
    frozen_backbone: bool  # the backbone is not trained (and stays in eval mode)
    # "vector" | "map": what the heads read (the tasks' kinds' `reads`); "token map": the model reads the backbone's
    # tokens itself (a multi-task architecture), so only "vector" features are cached
    # (benchmark/harness/feature_cache.py)
    feature_form: str
    autocast_dtype: torch.dtype | None  # set on CUDA (bf16); every entry point returns the compute dtype

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """shared(backbone(x)): what every head reads."""

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        """Task `task`'s raw output, flattened: B × head_dims[task]."""

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor | dict[int, torch.Tensor]:
        """B × max(head_dims), each row through its own task's head, padded with its kind's `pad`;
        `task_labels=None` → {task: B × head_dims[task]} (Avalanche's MultiTaskModule convention)."""

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        ...

    def distill(self, task: int, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """LwF's term for old task `task` in that task's kind (benchmark/tasks/kinds)."""

    def with_backbone(self, backbone: nn.Module) -> MultiHeadModel:
        """The same shared layers and heads (the very modules, not copies) behind another backbone: the feature
        cache trains `with_backbone(nn.Identity())` on cached features; the budget counts the original."""


class BackboneModes:
    """What both implementers do alike (mixed in before their nn.Module base): a frozen backbone stays in eval mode
    (its dropout and norm statistics fixed) whatever `train()` is called with; `_autocast(x)` is the CUDA bf16
    context when `autocast_dtype` is set, else nothing; the contract's routed forward, single-task forward and
    LwF term, from each implementer's `features` and `head`."""

    def routed(self, x: torch.Tensor, task_labels, pad: float) -> torch.Tensor | dict[int, torch.Tensor]:
        """B × max(head_dims), each row through its own task's head, padded with `pad`; {task: output} for None."""
        feats = self.features(x)
        if task_labels is None:
            return {t: self.head(t, feats) for t in range(len(self.head_dims))}
        return route(task_labels, feats, self.head_dims, pad, lambda t, mask: self.head(t, feats[mask]))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.head(task_label, self.features(x))

    def distill(self, task: int, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        spec = self.tasks[task]
        return kind_of(spec).distill(student, teacher, spec, temperature)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def _autocast(self, x: torch.Tensor):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.autocast_dtype)
