"""Per-task gradients on the shared parameters: monitoring (norms and pairwise cosine similarity, per epoch) and the
task relations a user declares (`task_relations={('a', 'b'): 'negative', ...}`).

Monitoring, after every epoch, on a fixed monitoring batch (the first `batch_size` training images) with the model in
evaluation mode (no dropout or router sampling: the run's random stream and weights are left exactly as they were):
g_t = ∇ L_t with respect to

- the last shared layer (GradNorm's W): ‖g_t‖ per task and cos(g_s, g_t) per pair — "which task dominates, which
  tasks pull apart" (the multi-task toolkit's troubleshooting advice);
- every shared parameter: cos(g_s, g_t) per pair, the *measured* relation reported beside the declared one
  (cos > 0: the tasks push the shared weights the same way, positive transfer is possible; cos < 0: they conflict).

Declared relations act on training as a gradient-conflict prior: for every pair declared 'negative', when the two
weighted task gradients on the shared parameters conflict (g_s · g_t < 0), each is projected onto the other's normal
plane before they are summed (PCGrad's surgery, Yu et al. 2020, on the declared pairs only):

    g_s ← g_s − (g_s·g_t / ‖g_t‖²) g_t,    g_t ← g_t − (g_t·g_s / ‖g_s‖²) g_s        (both from the originals)

'positive' and 'neutral' pairs are trained as they are and only measured. With the `pcgrad` weighting every pair is
projected already, so declaring 'negative' there is an error.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from benchmark.errors import UserError


def pair_key(a: str, b: str) -> str:
    return f"{a}~{b}"


def parse_relations_text(text: str) -> dict[tuple[str, str], str]:
    """`classes~coarse=positive,coarse~random=negative` (the --task-relations flag) → {(a, b): relation}; the names
    and relations are checked by the model (benchmark/mtl/options.relation_pairs)."""
    out = {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        pair, eq, relation = part.partition("=")
        a, tilde, b = pair.partition("~")
        if not (eq and tilde and a.strip() and b.strip()):
            raise UserError(f"--task-relations takes a~b=relation pairs (e.g. classes~coarse=positive), got {part!r}")
        out[(a.strip(), b.strip())] = relation.strip()
    return out


def measured_relations(epochs: list[dict], declared: Mapping[tuple[str, str], str], tasks: list[str]) -> list[dict]:
    """Every pair of tasks: its declared relation ('undeclared' if none) beside the measured one, the gradient
    cosine over the shared parameters (mean over the epochs and the last epoch's; None when nothing is shared)."""
    out = []
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            values = [c[pair_key(a, b)] for e in epochs if pair_key(a, b) in (c := (e.get("gradients") or {}).get(
                "shared_cosine", {}))]
            out.append({"tasks": [a, b], "declared": declared.get((a, b), "undeclared"),
                        "shared_cosine_mean": sum(values) / len(values) if values else None,
                        "shared_cosine_last": values[-1] if values else None})
    return out


def task_gradients(losses: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """{task: ∇ L_t flattened over params}; leaves the graph and every .grad as they were."""
    params = [p for p in params if p.requires_grad]
    return {t: torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        loss, params, retain_graph=True, allow_unused=True, materialize_grads=True)]) for t, loss in losses.items()}


def cosines(grads: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """cos(g_s, g_t) for every pair s before t (0 when either gradient is zero)."""
    names = list(grads)
    return {pair_key(s, t): float(torch.nn.functional.cosine_similarity(grads[s], grads[t], dim=0, eps=1e-20))
            for i, s in enumerate(names) for t in names[i + 1:]}


def project_declared(grads: Mapping[str, torch.Tensor], negative: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """The declared-negative pairs' surgery (module docstring); pairs with an inactive task are skipped."""
    out = {t: g.clone() for t, g in grads.items()}
    for s, t in negative:
        if s in grads and t in grads and (dot := grads[s] @ grads[t]) < 0:
            out[s] -= dot / grads[t].pow(2).sum().clamp_min(1e-20) * grads[t]
            out[t] -= dot / grads[s].pow(2).sum().clamp_min(1e-20) * grads[s]
    return out


def relation_correction(weighted: Mapping[str, torch.Tensor], shared: list[torch.nn.Parameter],
                        negative: list[tuple[str, str]]) -> torch.Tensor:
    """Σ_t g_t' − Σ_t g_t over the shared parameters (flattened), to add after the weighting's backward pass;
    computed before it, while the graph is still there. `weighted`: {task: w_t L_t}."""
    grads = task_gradients(weighted, shared)
    return sum(project_declared(grads, negative).values()) - sum(grads.values())


def add_flat(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    """p.grad += the slice of `flat` that is p's (parameters in the order `task_gradients` flattened them)."""
    offset = 0
    for p in (p for p in params if p.requires_grad):
        n = p.numel()
        delta = flat[offset:offset + n].view_as(p)
        p.grad = delta.clone() if p.grad is None else p.grad + delta
        offset += n


@torch.enable_grad()
def monitor(model, x: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> dict:
    """The per-epoch record: last-shared-layer norms and cosines, shared-parameter cosines (empty when the
    architecture shares nothing)."""
    was_training = model.training
    model.eval()
    try:
        losses = model.task_losses(model(x), labels)
        last, shared = model.arch.last_shared_parameters(), model.arch.shared_parameters()
        out = {}
        if last:
            g = task_gradients(losses, last)
            out["last_shared_norm"] = {t: float(v.norm()) for t, v in g.items()}
            out["last_shared_cosine"] = cosines(g)
        if shared:
            out["shared_cosine"] = cosines(task_gradients(losses, shared))
        return out
    finally:
        model.train(was_training)
