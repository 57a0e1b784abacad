"""PCGrad, gradient surgery (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning").

For each task t (flattened gradient g_t on the shared parameters), in a random order over the other tasks s:

    if g_t^PC · g_s < 0:   g_t^PC ← g_t^PC − (g_t^PC · g_s) / ‖g_s‖² · g_s

(projection onto the normal plane of each conflicting original g_s), then the shared update is Σ_t g_t^PC.
Task-specific parameters (heads, their own columns) keep the plain Σ_t L_t gradient: only one task reaches them.
"""

from __future__ import annotations

import torch

from benchmark.mtl.registries import WEIGHTINGS
from benchmark.mtl.weightings.base import Weighting


def project_conflicting(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """grads: T×P (one row per task) → T×P, each row projected as above; the inputs are not modified."""
    out = grads.clone()
    T = grads.shape[0]
    for t in range(T):
        for s in torch.randperm(T, generator=generator).tolist():
            if s == t:
                continue
            dot = out[t] @ grads[s]
            if dot < 0:
                out[t] -= dot / grads[s].pow(2).sum().clamp_min(1e-20) * grads[s]
    return out


class PCGrad(Weighting):
    def __init__(self, seed: int = 0):
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def backward(self, losses, shared, last_shared):
        active = list(losses)
        if not shared or len(active) < 2:
            return super().backward(losses, shared, last_shared)
        shared = [p for p in shared if p.requires_grad]
        grads = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(
            losses[t], shared, retain_graph=True, allow_unused=True, materialize_grads=True)]) for t in active])
        update = project_conflicting(grads, self.generator).sum(dim=0)
        sum(losses.values()).backward()  # heads and other task-specific parameters
        offset = 0
        for p in shared:
            n = p.numel()
            p.grad = update[offset:offset + n].view_as(p).clone()
            offset += n
        return dict.fromkeys(active, 1.0)


@WEIGHTINGS.register("pcgrad", projects_conflicts=True)
def build(cfg, tasks: tuple[str, ...]) -> PCGrad:
    return PCGrad()
