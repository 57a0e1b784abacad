"""The loss the Avalanche template calls, `criterion(outputs, targets)`, for any mix of task kinds in a batch."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.tasks.kind import kind_of


class TaskCriterion(nn.Module):
    """Σ_t n_t · loss_t / B over the task groups of a batch (replay and joint batches mix tasks).

    Packed targets (y[:, 0] = task id) are grouped by task and each group gets its own kind's loss. Class-label
    targets carry no task id; the model pads each row past its task's width with -inf, so one cross-entropy over
    the whole routed batch equals the grouped sum — which is what it computes (Avalanche's default criterion,
    one call). A stream mixing label kinds with other kinds must pack its targets: that is an error here.
    """

    def __init__(self, specs: list):
        super().__init__()
        self.specs = list(specs)
        kinds = {kind_of(s) for s in self.specs}
        packed = {k.packed for k in kinds}
        if len(packed) > 1 or (packed == {False} and len({type(k).loss for k in kinds}) > 1):
            raise UserError(f"tasks of kinds {sorted(s.kind for s in self.specs)} in one stream: their targets "
                            f"must all be packed rows (benchmark/tasks/packed.py) or all class labels")
        self.packed = packed == {True}

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return kind_of(self.specs[0]).loss(outputs, targets, self.specs[0])
        task_ids = targets[:, 0].long()
        total = outputs.new_zeros(())
        for t in torch.unique(task_ids).tolist():
            if not 0 <= t < len(self.specs):
                raise ValueError(f"task id {t} in the batch, but only {len(self.specs)} task specs")
            rows, spec = task_ids == t, self.specs[t]
            total = total + rows.sum() * kind_of(spec).loss(outputs[rows], targets[rows, 1:], spec)
        return total / outputs.shape[0]
