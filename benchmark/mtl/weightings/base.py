"""The loss-weighting contract (LibMTL's): `backward(losses, shared, last_shared)` does the backward pass itself.

Loss-level methods (equal, static, uncertainty, DWA, GradNorm's weights) only decide a scalar objective
Σ_t w_t L_t (+ terms); gradient-level methods (PCGrad) also rewrite the shared parameters' gradients. Either way the
caller does `optimizer.zero_grad(); weighting.backward(...); optimizer.step()`.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import UserError


class Weighting(nn.Module):
    def weights(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """w_t for the tasks present in `losses` (the active ones under the schedule)."""
        return {t: torch.ones(()) for t in losses}

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar objective; what `MultiTaskModel.compute_loss` returns."""
        w = self.weights(losses)
        return sum(w[t] * losses[t] for t in losses)

    def backward(self, losses: dict[str, torch.Tensor], shared: list[nn.Parameter],
                 last_shared: list[nn.Parameter]) -> dict[str, float]:
        """Backward pass of the weighted objective; → the weights used (for logging)."""
        self.combine(losses).backward()
        return {t: float(w) for t, w in self.weights(losses).items()}

    def on_epoch_end(self, mean_losses: dict[str, float]) -> None:
        """Per-epoch mean training loss of each active task (DWA reads the history)."""


def per_task_numbers(text: str, tasks: tuple[str, ...], flag: str, example: str) -> dict[str, float]:
    """A weighting's per-task numbers as its flag takes them: one per task in order (`1,0.5,1`) or name=value pairs
    (`a=1,c=0.5`) → {task: number} of the tasks given ({} for an empty text); a wrong count, a non-number or an
    unknown task name is one error line naming `flag`."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        if all("=" in p for p in parts):
            given = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
        elif len(parts) == len(tasks):
            given = dict(zip(tasks, map(float, parts), strict=True))
        else:
            raise UserError(f"{flag} has {len(parts)} values for {len(tasks)} tasks ({', '.join(tasks)}); give one "
                            f"per task or name=value pairs")
    except ValueError:
        raise UserError(f"{flag} takes numbers (e.g. {example}) or name=value pairs, got {text!r}") from None
    if unknown := [t for t in given if t not in tasks]:
        raise UserError(f"{flag} names unknown task(s) {unknown}; tasks are {list(tasks)}")
    return given
