"""Multi-task vs single-task: transfer gain per task and Δm (one number per experiment), and which single-task run
is the baseline of which multi-task run.

M_t = task t's transfer metric in the multi-task run; S_t = the same metric in its single-task baseline: a run of
the same trunk configuration (`trunk_key`: architecture and its knobs, backbone and its knobs, pooling, activation,
shared layers × width, task-head layers, experts, dropout and where, on the same data), trained on task t alone with
equal weighting and the joint schedule under the profile's budget (epochs, lr, batch size). The MTL batch derives one
such run per distinct (trunk, task) from the profile's multi-task experiments.

    transfer gain_t = (−1)^{l_t} (M_t − S_t) / S_t                       (> 0: the other tasks helped task t)
    Δm = (1/T) Σ_t (−1)^{l_t} (M_t − S_t) / S_t,  l_t = 1 if lower is better (Maninis et al. 2019, "Attentive
         Single-Tasking of Multiple Tasks"; LibMTL's Δ_p); positive = better than single-task on average.

The transfer metric is the task's primary metric, except for reconstruction, where it is the test MSE with l = 1
(as LibMTL and Maninis et al. use errors), not the displayed recon_score r = 1 − MSE/MSE_mean: the relative change
of r is −(MSE_m − MSE_s)/(MSE_mean − MSE_s), i.e. the (sign-flipped) relative change of the MSE times
MSE_s/(MSE_mean − MSE_s) = (1 − r_s)/r_s: equal only for a baseline with r_s = 0.5, 4× smaller at r_s = 0.8.
Both are undefined (None) when S_t <= 0 (a relative change from 0 has no meaningful size) or when a task has no
matching baseline.
"""

from __future__ import annotations

import json

from benchmark.mtl.keywords import config_keys
from benchmark.outputs.results import ADDED_LATER

DELTA_M_CONVENTION = ("Δm = (1/T) Σ_t (−1)^l_t (M_t − M_STL,t) / M_STL,t, l_t = 1 if lower is better (Maninis et al. "
                      "2019; LibMTL): M = accuracy for classification, test MSE (l = 1) for reconstruction; "
                      "M_STL = the single-task run of the same trunk (architecture, backbone, layers, heads, "
                      "dropout) with equal weighting, joint schedule and the profile's budget; '–' = no such run. "
                      "Positive Δm = better than the single-task baselines on average.")

# MTLConfig fields that define the network a task is trained with (plus each chosen entry's own knobs, and the
# run-level keys of architecture knobs: MMoE's `experts`, benchmark/mtl/keywords.py).
TRUNK_FIELDS = ("architecture", "backbone", "pooling", "shared_layers", "shared_width", "task_layers", "dropout",
                "dropout_at", "activation", "task_set")
ENTRY_FIELDS = ("architecture", "backbone", "task_set")  # their `<name>.<knob>` keys are part of the trunk too


def transfer_gain(mtl: float, stl: float, lower_is_better: bool = False) -> float | None:
    if stl is None or mtl is None or stl <= 0:  # a relative change from 0 or a negative score has no sign
        return None
    g = (mtl - stl) / stl
    return -g if lower_is_better else g


def delta_m(mtl: dict[str, float], stl: dict[str, float], lower_is_better=frozenset()) -> float | None:
    """mtl, stl: task → transfer metric; averaged over the tasks of `mtl` (each needs a baseline in `stl`)."""
    gains = [transfer_gain(mtl[t], stl[t], t in lower_is_better) if t in stl else None for t in mtl]
    if not gains or any(g is None for g in gains):
        return None
    return sum(gains) / len(gains)


def trunk_flags(config: dict) -> dict:
    """The keys of a flat run config (MTLConfig.to_dict(), as in config.json) that define its trunk, as they are:
    what a derived baseline copies from its experiment."""
    prefixes = tuple(f"{config.get(k)}." for k in ENTRY_FIELDS)
    return {k: config.get(k) for k in (*TRUNK_FIELDS, *config_keys())} | {
        k: v for k, v in config.items() if k.startswith(prefixes)}


def trunk_config(config: dict) -> dict:
    """trunk_flags(config), normalised so that settings without effect compare equal: no dropout whatever
    `dropout_at` (the MLP's, or an entry's own: `small_cnn.dropout`); a run-level key of an architecture's knob
    (`experts`) only for that architecture."""
    out = trunk_flags(config)
    prefixes = tuple(f"{config.get(k)}." for k in ENTRY_FIELDS)
    for key, value in ADDED_LATER.items():  # runs written before a setting existed had its value (pooling: mean)
        if key in TRUNK_FIELDS and out[key] is None or key.startswith(prefixes) and key not in out:
            out[key] = value
    for prefix in ("", *prefixes):  # the MLP's dropout, and an entry's own (the conv trunk's small_cnn.dropout)
        if f"{prefix}dropout_at" in out and (not out.get(f"{prefix}dropout") or out[f"{prefix}dropout_at"] == "none"):
            out[f"{prefix}dropout"], out[f"{prefix}dropout_at"] = 0.0, "none"
    for key, (_, keyword) in config_keys().items():
        if out["architecture"] != keyword.entry:
            out[key] = None
    return out


def trunk_key(config: dict) -> str:
    """A hashable, order-free identity of `trunk_config(config)`."""
    return json.dumps(trunk_config(config), sort_keys=True, default=str)


def is_baseline(tasks, weighting: str, schedule: str) -> bool:
    """Whether a run can serve as a single-task baseline: one task, equal weighting, joint schedule."""
    return len(tasks) == 1 and weighting == "equal" and schedule == "joint"
