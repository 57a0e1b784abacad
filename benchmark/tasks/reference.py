"""The trivial reference a task kind may declare (`reference = Vote()`): an optional capability, read only by the
reference code (benchmark/outputs/references.py for streams, benchmark/mtl/references.py for task sets). A kind without
one (`reference = None`, TaskKind's default) needs none of these members; a reference also uses the kind's
`as_output` (targets → the output that predicts exactly them) to score its prediction with the kind's own metric.

    Vote        k-NN vote over class labels: `labels` maps targets (as `target_of` gives them) to class labels,
                `as_target` maps voted labels back to targets
    Copy        the nearest training image's target, copied
    MeanTarget  the mean training target; `scores_of_mse` maps a split's mean squared error to the kind's metrics
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def _as_long(target: torch.Tensor) -> torch.Tensor:
    return target.long()


def _same(labels: torch.Tensor) -> torch.Tensor:
    return labels


@dataclass(frozen=True)
class Vote:
    labels: Callable[[torch.Tensor], torch.Tensor] = _as_long  # targets → class labels (N)
    as_target: Callable[[torch.Tensor], torch.Tensor] = _same  # class labels (N) → targets


@dataclass(frozen=True)
class Copy:
    pass


@dataclass(frozen=True)
class MeanTarget:
    scores_of_mse: Callable[..., dict[str, float]]  # (mse, spec) → {metric: value}


TrivialReference = Vote | Copy | MeanTarget
