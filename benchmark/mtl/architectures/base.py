"""The architecture contract: x → {task: B×out_dim representation}; task heads are added by `MultiTaskModel`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.models.layers import TokenBackbone


@dataclass(frozen=True)
class ArchSpec:
    """What every architecture is sized by (its own extra knobs live in its config dataclass)."""

    tasks: tuple[str, ...]
    shared_layers: tuple[int, ...]  # widths of the shared (or per-column) hidden layers
    dropout: float = 0.0
    dropout_at: str = "each"  # none | last | each
    activation: str = "relu"  # after each hidden layer (benchmark.models.layers.ACTIVATIONS)


BackboneFactory = Callable[[], TokenBackbone]  # a fresh, independently initialised backbone per call


class Architecture(nn.Module):
    """Layers reading the backbone's width use benchmark.models.layers' mlp / mlp_blocks / linear: `backbone.dim` is
    None for a vector input sized at the first forward (they become nn.LazyLinear)."""

    out_dim: int

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task's loss reaches (what PCGrad projects)."""
        raise NotImplementedError

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer (GradNorm's W). Empty when nothing is shared (progressive)."""
        raise NotImplementedError

    def penalty(self) -> torch.Tensor | None:
        """A regulariser the architecture adds to the weighted task losses (group lasso's ℓ2,1), or None."""
        return None
