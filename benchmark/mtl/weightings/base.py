"""The loss-weighting contract (LibMTL's): `backward(losses, shared, last_shared)` does the backward pass itself.

Loss-level methods (equal, static, uncertainty, DWA, GradNorm's weights) only decide a scalar objective
Σ_t w_t L_t (+ terms); gradient-level methods (PCGrad) also rewrite the shared parameters' gradients. Either way the
caller does `optimizer.zero_grad(); weighting.backward(...); optimizer.step()`.
"""

from __future__ import annotations

import torch
from torch import nn


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
