"""Reconstruction of the input image from a feature vector (the multi-task set's decoder task).

    loss         MSE = mean (x̂ − x)² over B×C×H×W
    mse          the same, over a split (lower is better; what transfer gain and Δm compare)
    recon_score  1 − MSE / MSE_mean, MSE_mean = the test split's MSE of predicting the mean training image
                 (primary: higher is better, 0 = no better than the mean image)
    psnr         10·log10(range² / MSE) dB, range = 2 for images in [−1, 1]

The displayed recon_score is an affine map of the MSE whose relative changes differ by (1 − r)/r, hence Δm reads
the MSE. LwF's term (if a continual stream ever holds this kind): MSE between student and teacher outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import KINDS
from benchmark.tasks.kind import TaskKind
from benchmark.tasks.reference import MeanTarget


@dataclass(frozen=True)
class ReconstructionParams:
    shape: tuple[int, ...]  # one target's shape, e.g. (C, H, W)
    mse_of_mean_image: float | None = None  # recon_score's reference; None → recon_score is NaN
    value_range: float = 2.0  # max − min of the target values (PSNR)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))


def scores(mse: float, spec) -> dict[str, float]:
    """{'mse', 'psnr', 'recon_score'} of a split's mean squared error."""
    p = spec.params
    out = {"mse": mse, "psnr": 10 * math.log10(p.value_range**2 / max(mse, 1e-12))}
    out["recon_score"] = 1 - mse / p.mse_of_mean_image if p.mse_of_mean_image else float("nan")
    return out


class _MeanSquaredError:
    def __init__(self, kind, spec):
        self.kind, self.spec, self.sum, self.seen = kind, spec, 0.0, 0

    def update(self, o, y):
        self.sum += float(self.kind.loss(o, y, self.spec)) * len(o)
        self.seen += len(o)

    def compute(self) -> dict[str, float]:
        return scores(self.sum / max(self.seen, 1), self.spec)


@KINDS.register("reconstruction", config_cls=ReconstructionParams)
class Reconstruction(TaskKind):
    primary = "recon_score"
    reference = MeanTarget(scores_of_mse=scores)  # predict the mean training target (benchmark/mtl/references.py)

    @property
    def transfer(self):
        return "mse", True

    def shape(self, spec):
        return spec.params.shape

    def make_head(self, spec, width: int) -> nn.Module:
        return nn.Linear(width, self.output_len(spec))

    def loss(self, o, y, spec):
        return F.mse_loss(self.unpack_output(o, spec), y)

    def distill(self, student, teacher, spec, temperature: float):
        return F.mse_loss(student, teacher)

    def metric(self, spec):
        return _MeanSquaredError(self, spec)

    def predict(self, o: torch.Tensor, spec) -> torch.Tensor:
        return self.unpack_output(o, spec)
