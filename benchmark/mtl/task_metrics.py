"""Per-task losses and metrics, chosen by the TaskSpec (kind / loss), never by task name.

    cross_entropy: CE(logits B×K, labels B)                 accuracy = mean(argmax = label)
    mse:           mean (x̂ − x)² over B×C×H×W                mse (lower is better; what Δm uses)
                                                            recon_score = 1 − MSE / MSE_mean (TaskSpec.info)
                                                            psnr = 10·log10(range² / MSE) dB, range = 2 for [−1, 1]

`transfer_metric(spec)` names the metric transfer gain and Δm compare (benchmark/mtl/transfer.py): accuracy for
classification, the MSE (lower is better) for reconstruction — the displayed primary recon_score is an affine map
of it whose relative changes differ by (1 − r)/r.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.streams.task_stream import TaskSpec

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}
LOWER_IS_BETTER = frozenset({"loss", "mse"})  # every primary metric here is higher-is-better


def task_loss(spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return LOSSES[spec.loss](pred, target)


def task_scores(spec: TaskSpec, sum_loss: float, correct: float, n: int) -> dict[str, float]:
    """From accumulated sums over a split: {'loss', primary metric, secondary metrics}."""
    loss = sum_loss / max(n, 1)
    if spec.loss == "mse":
        ref = spec.info.get("mse_of_mean_image")
        rng = spec.info.get("value_range", 2.0)
        out = {"loss": loss, "mse": loss, "psnr": 10 * math.log10(rng**2 / max(loss, 1e-12))}
        out["recon_score"] = 1 - loss / ref if ref else float("nan")
        return out
    return {"loss": loss, "accuracy": correct / max(n, 1)}


def transfer_metric(spec: TaskSpec) -> tuple[str, bool]:
    """→ (metric name in task_scores' dict, lower is better) for transfer gain and Δm."""
    if spec.loss == "mse":
        return "mse", True
    return spec.primary, spec.primary in LOWER_IS_BETTER
