"""The DINO objective (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", Alg. 1).

A student g_θs and a teacher g_θt (same architecture) map each view x of an image to K prototype scores.
Probabilities with temperature τ:  P(x) = softmax(g(x) / τ).  The teacher's are centred and sharpened:

    P_t(x) = softmax((g_θt(x) − c) / τ_t),      P_s(x') = softmax(g_θs(x') / τ_s),   τ_t < τ_s

    loss = 1/|pairs| Σ_{x ∈ globals} Σ_{x' ∈ views, x' ≠ x}  mean_batch H(P_t(x), P_s(x')),   H(a, b) = −Σ_k a_k log b_k

Only the student receives gradients. After each step the centre and the teacher follow:

    c  ← m_c·c + (1 − m_c)·mean_{batch, global views} g_θt(x)                    (centering, m_c = 0.9)
    θt ← λ·θt + (1 − λ)·θs                                                       (EMA teacher)
    λ_i = 1 − (1 − λ_0)·(cos(π i / I) + 1) / 2                                   (λ_0 = 0.996 → 1 over I steps)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def dino_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """student_out: one B×K tensor per view, the global views first (same order as teacher_out); teacher_out: one
    B×K tensor per global view; center: 1×K. → the mean over pairs (teacher view i, student view v ≠ i) of the
    batch-mean cross-entropy H(P_t, P_s) (module docstring). The teacher side carries no gradient."""
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher_out]
    log_probs = [F.log_softmax(s / student_temp, dim=-1) for s in student_out]
    terms = [torch.sum(-q * log_probs[v], dim=-1).mean()
             for i, q in enumerate(targets) for v in range(len(log_probs)) if v != i]
    return torch.stack(terms).mean()


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """DINOv2's KoLeo regulariser (Oquab et al. 2023, after Sablayrolles et al. 2019, "Spreading vectors for
    similarity search"): the Kozachenko–Leonenko differential-entropy estimate of the batch's ℓ2-normalised features,
    −mean_i log ‖x̂_i − x̂_{n(i)}‖ with n(i) the nearest other row (largest dot product). Minimising it pushes each
    feature away from its nearest neighbour: the batch spreads over the sphere. features: B×D, B ≥ 2."""
    x = F.normalize(features, eps=eps, dim=-1)
    with torch.no_grad():  # which neighbour: not differentiated (as DINOv2's pairwise_NNs_inner)
        dots = x @ x.T
        dots.fill_diagonal_(-2.0)
        nearest = dots.argmax(dim=1)
    return -torch.log(F.pairwise_distance(x, x[nearest], eps=eps) + eps).mean()


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: list[torch.Tensor], momentum: float) -> torch.Tensor:
    """c ← m·c + (1 − m)·mean over the batch and the global views of the teacher's outputs; → the new 1×K centre."""
    batch_center = torch.cat(teacher_out).mean(dim=0, keepdim=True)
    return center * momentum + batch_center * (1 - momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θt ← λ·θt + (1 − λ)·θs for every parameter, in place (the teacher's buffers are not touched: a ViT has none
    that learn). Two multi-tensor operations over all parameters: the same arithmetic as a loop of mul_ and add_ (bit
    for bit on the CPU, tested), and on a GPU a few kernel launches instead of two per parameter."""
    pt, ps = list(teacher.parameters()), [p.detach() for p in student.parameters()]
    if len(pt) != len(ps):
        raise ValueError(f"teacher has {len(pt)} parameters, student {len(ps)}")
    torch._foreach_mul_(pt, momentum)
    torch._foreach_add_(pt, ps, alpha=1 - momentum)


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0,
                    warmup_start: float = 0.0) -> np.ndarray:
    """One value per step (DINO's cosine_scheduler): a linear warm-up from warmup_start to base over the warm-up
    steps, then v_i = final + (base − final)·(1 + cos(π i / I)) / 2 over the I remaining steps (i = 0..I−1)."""
    warm = min(warmup_epochs * steps_per_epoch, epochs * steps_per_epoch)
    rest = epochs * steps_per_epoch - warm
    head = np.linspace(warmup_start, base, warm) if warm else np.array([])
    i = np.arange(rest)
    tail = final + 0.5 * (base - final) * (1 + np.cos(math.pi * i / max(rest, 1)))
    return np.concatenate([head, tail])


def momentum_schedule(base: float, epochs: int, steps_per_epoch: int) -> np.ndarray:
    """λ_i = 1 − (1 − λ_0)·(cos(π i / I) + 1) / 2: the teacher's EMA momentum, λ_0 → 1 over training."""
    return cosine_schedule(base, 1.0, epochs, steps_per_epoch)


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """τ_t per epoch: linear from warmup_temp to temp over warmup_epochs, then temp (DINO's teacher warm-up; a
    too-sharp teacher early on collapses training)."""
    warm = np.linspace(warmup_temp, temp, warmup_epochs) if warmup_epochs else np.array([])
    return np.concatenate([warm, np.full(max(epochs - warmup_epochs, 0), temp)])[:epochs]
