"""Packed targets, for kinds whose target is not one class label (the dense suite's masks and boxes).

Avalanche's template calls `criterion(mb_output, mb_y)` with one tensor each and collates replay / joint batches
with the default collate, so every sample's target and output are packed into fixed-length float32 rows:

    target  y = [task id, payload..., -1 padding]      output  o = [flattened raw head output..., 0 padding]

A packed kind's `loss`, `distill` and metric take payload rows (y[:, 1:]) of ONE task; `TaskCriterion`
(benchmark/tasks/criterion.py) takes whole rows and groups them by task id.
"""

from __future__ import annotations

import torch

from benchmark.tasks.kind import TaskKind
from benchmark.tasks.reference import Copy


class PackedKind(TaskKind):
    packed = True
    reads = "map"
    pad = 0.0
    reference = Copy()

    def payload_len(self, spec) -> int:
        raise NotImplementedError

    def pack_target(self, target: dict, spec) -> torch.Tensor:
        """One sample's target (a dict: label / mask / boxes...) → its payload row."""
        raise NotImplementedError

    def unpack_target(self, y: torch.Tensor, spec) -> dict:
        """One payload row → the target dict."""
        raise NotImplementedError

    def target_of(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, 1:]
