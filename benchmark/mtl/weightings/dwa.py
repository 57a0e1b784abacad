"""Dynamic Weight Average (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with Attention", eq. 7).

From each task's mean training loss of the previous two epochs (k = current epoch, K = number of active tasks):

    r_t(k−1) = L_t(k−1) / L_t(k−2),      w_t(k) = K · exp(r_t(k−1)/T) / Σ_i exp(r_i(k−1)/T)

with temperature T = 2 (the paper's). w_t = 1 while a task has fewer than two epochs of history (the paper's first
two epochs). Weights sum to K; a task whose loss falls more slowly gets more weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmark.errors import UserError
from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting


@dataclass(frozen=True)
class DwaConfig:
    temperature: float = 2.0  # T: larger = closer to equal weights

    def __post_init__(self):
        if not self.temperature > 0:
            raise UserError(f"--dwa.temperature must be > 0, got {self.temperature}")


def dwa_weights(history: dict[str, list[float]], tasks, temperature: float = 2.0) -> dict[str, float]:
    """history[t] = task t's per-epoch mean training losses so far (oldest first)."""
    tasks = list(tasks)
    if any(len(history.get(t, [])) < 2 for t in tasks):
        return dict.fromkeys(tasks, 1.0)
    r = {t: history[t][-1] / history[t][-2] for t in tasks}
    z = sum(math.exp(r[t] / temperature) for t in tasks)
    return {t: len(tasks) * math.exp(r[t] / temperature) / z for t in tasks}


class DWA(Weighting):
    def __init__(self, cfg: DwaConfig):
        super().__init__()
        self.temperature, self.history = cfg.temperature, {}

    def weights(self, losses):
        return {t: torch.tensor(w) for t, w in dwa_weights(self.history, losses, self.temperature).items()}

    def on_epoch_end(self, mean_losses):
        for t, v in mean_losses.items():
            self.history.setdefault(t, []).append(float(v))


@WEIGHTINGS.register("dwa", config_cls=DwaConfig)
def build(cfg: DwaConfig, tasks: tuple[str, ...]) -> DWA:
    return DWA(cfg or DwaConfig())
