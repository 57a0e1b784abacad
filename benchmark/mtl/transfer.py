"""Multi-task vs single-task: transfer gain per task and Δm (one number per experiment).

M_t = task t's primary test metric in the multi-task run; S_t = the same metric in its single-task baseline (the
same trunk, weighting and budget, trained on task t alone; a first-class run of the profile).

    transfer gain_t = (M_t − S_t) / S_t                                  (> 0: the other tasks helped task t)
    Δm = (1/T) Σ_t (−1)^{l_t} (M_t − S_t) / S_t,  l_t = 1 if lower is better (Maninis et al. 2019, "Attentive
         Single-Tasking of Multiple Tasks"); positive = better than single-task on average.

Every primary metric here is higher-is-better (accuracy, recon_score), so l_t = 0; the sign flip is kept for
lower-is-better metrics (losses). Both are undefined (None) when S_t <= 0 (e.g. a recon_score below the mean image's).
"""

from __future__ import annotations

DELTA_M_CONVENTION = ("Δm = (1/T) Σ_t (−1)^l_t (M_t − M_STL,t) / M_STL,t, l_t = 1 if lower is better (Maninis et al. "
                      "2019); here every primary metric is higher-is-better (accuracy, recon_score = 1 − MSE/MSE_mean),"
                      " so positive Δm = better than the single-task baselines on average.")


def transfer_gain(mtl: float, stl: float, lower_is_better: bool = False) -> float | None:
    if stl <= 0:  # a relative change from 0 or from a negative score has no meaningful sign
        return None
    g = (mtl - stl) / stl
    return -g if lower_is_better else g


def delta_m(mtl: dict[str, float], stl: dict[str, float], lower_is_better=frozenset()) -> float | None:
    """mtl, stl: task → metric; averaged over the tasks of `mtl` (each needs a baseline in `stl`)."""
    gains = [transfer_gain(mtl[t], stl[t], t in lower_is_better) if t in stl else None for t in mtl]
    if not gains or any(g is None for g in gains):
        return None
    return sum(gains) / len(gains)
