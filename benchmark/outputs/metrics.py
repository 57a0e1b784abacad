"""Continual-learning metrics, all from the performance matrix R.

R[i, j] = primary score (higher is better) of task j after training experience i; i, j = 0..T-1 (0-based).
b[j]    = task j's score of the untrained model (evaluated before any training).

    ACC        = mean_j R[T-1, j]                                              (average final score)
    BWT        = mean_{j<T-1} ( R[T-1, j] - R[j, j] )                          Lopez-Paz & Ranzato 2017 (GEM);
                                                                               negative = forgetting
    Forgetting = mean_{j<T-1} ( max_{j<=l<=T-2} R[l, j] - R[T-1, j] )          Chaudhry et al. 2018 (RWalk);
                                                                               positive = forgetting
    FWT        = mean_{j>0} ( R[j-1, j] - b[j] )                               Lopez-Paz & Ranzato 2017

Forgetting takes the max only over evaluations after task j was trained (l >= j): before that its head is
untrained and its score says nothing about what was learnt. Avalanche's own forgetting metric uses R[j, j] in
place of the max, so it equals -BWT, not our Forgetting.

Only a sequential run (one row per task, R square) defines BWT, forgetting and FWT; for joint training (one row)
and for T = 1 they are None — not applicable, never 0.
"""

from __future__ import annotations

import numpy as np


def task_forgetting(R) -> list[float]:
    """Forgetting of each task j < T−1: max_{l ∈ [j, T−1)} R[l][j] − R[T−1][j] (square R); cl_metrics averages it."""
    R = np.asarray(R, dtype=float)
    T = R.shape[0]
    return [float(R[j:T - 1, j].max() - R[T - 1, j]) for j in range(T - 1)]


def cl_metrics(R, b=None) -> dict[str, float | None]:
    R = np.array(R, dtype=float)  # a copy: the caller's matrix is never touched
    if R.ndim != 2 or R.shape[0] < 1:
        raise ValueError(f"R must be a non-empty 2-D matrix, got shape {R.shape}")
    rows, T = R.shape
    out: dict[str, float | None] = {"acc": float(R[-1].mean()), "bwt": None, "forgetting": None, "fwt": None}
    if rows != T or T < 2:
        return out
    out["bwt"] = float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))
    out["forgetting"] = float(np.mean(task_forgetting(R)))
    if b is not None:
        b = np.asarray(b, dtype=float)
        if b.shape != (T,):
            raise ValueError(f"b must have one score per task ({T}), got shape {b.shape}")
        out["fwt"] = float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))
    return out


def ci95_halfwidth(std, n):
    """Half-width of the 95 % t-interval of a mean over n runs: t_{0.975, n−1} · s / √n (s = sample std, ddof 1).

    At n = 3, t = 4.303, so the interval is ±2.48 s, not the ±2 s of a normal approximation; NaN when n < 2."""
    from scipy.stats import t

    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, t.ppf(0.975, np.maximum(n - 1, 1)) * std / np.sqrt(n), np.nan)
