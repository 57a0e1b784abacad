"""What the importance-weighted regularisers share (strategies/ewc.py, si.py, mas.py): a quadratic pull of every
trainable parameter towards its value after a past task, weighted per parameter,

    penalty = Σ_k  w · Σ_i Ω_k,i (θ_i − θ*_k,i)²        (one term k per anchor kept)

and the per-sample importance estimate over a finished experience. Parameters are matched by name, so the
penalty follows the model the strategy trains (on cached features: the shared layers and heads only).

Past heads stay frozen. A parameter whose Ω is 0 everywhere, or which sits exactly at its anchor, adds nothing to
the penalty nor to its gradient, so it is left out of the sum: its gradient stays None rather than 0. That matters
for a past task's head, which the current data never reaches: with a zero gradient instead of none, Adam would move
it on its stale moments (by up to 0.013 per weight, measured) and the penalty could only pull it back afterwards.
Left out, the optimizer skips it as it does under naive training; for every other parameter the gradient is the
penalty's own.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader, Subset

from benchmark.runtime.state import Stateful


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """θ*: a detached copy of every trainable parameter."""
    return {n: p.detach().clone() for n, p in trainable(model).items()}


def anchor(omega: dict[str, torch.Tensor], star: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(Ω, θ*) with the parameters whose Ω is 0 everywhere left out (they never add to the penalty)."""
    kept = [n for n, flag in zip(omega, torch.stack([(o != 0).any() for o in omega.values()]).tolist(),
                                 strict=True) if flag] if omega else []
    return {n: omega[n] for n in kept}, {n: star[n] for n in kept}


def quadratic_penalty(model: torch.nn.Module, anchors: list[tuple[dict, dict]], weight: float) -> torch.Tensor:
    """weight · Σ_(Ω, θ*) Σ_i Ω_i (θ_i − θ*_i)² over the anchors [(Ω by name, θ* by name)], leaving out the
    parameters at their anchor (one host sync for all of them)."""
    params = trainable(model)
    total = next(iter(params.values())).new_zeros(())
    for omega, star in anchors:
        names = [n for n in omega if n in params]
        if not names:
            continue
        moved = torch.stack([torch.ne(params[n], star[n]).any() for n in names]).tolist()
        for name, is_moved in zip(names, moved, strict=True):
            if is_moved:
                total = total + (omega[name] * (params[name] - star[name]) ** 2).sum()
    return weight * total


def per_sample_importance(strategy, n_samples: int, score, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """(1/N) Σ_x f(∇_θ score(model, x, y, t)) over N ≤ n_samples samples of the experience just trained (a subset
    drawn from `generator`, the strategy's own, when it holds more), one backward pass per sample, the model in eval
    mode. `score(model, x, y, t)` → (scalar to differentiate, f applied to each gradient: square for a Fisher, abs
    for MAS)."""
    model, dataset = strategy.model, strategy.experience.dataset.eval()
    if len(dataset) > n_samples:
        order = torch.randperm(len(dataset), generator=generator)[:n_samples]
        dataset = Subset(dataset, order.tolist())
    params = trainable(model)
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    n = 0
    # the generator: a torch DataLoader draws a seed from the global generator otherwise
    # (benchmark/runtime/randomness.py)
    for x, y, t in DataLoader(dataset, batch_size=1, shuffle=False, generator=generator):
        x, y, t = x.to(strategy.device), y.to(strategy.device), t.to(strategy.device)
        model.zero_grad(set_to_none=True)
        value, transform = score(model, x, y, t)
        value.backward()
        for name, p in params.items():
            if p.grad is not None:
                totals[name] += transform(p.grad.detach())
        n += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {name: v / max(n, 1) for name, v in totals.items()}


class PenaltyPlugin(Stateful, SupervisedPlugin):
    """Adds `penalty(model)` to the loss before every backward pass, once there is an anchor."""

    state_attrs, rebuilt_attrs = ("anchors", "last_penalty"), ("cfg",)

    def __init__(self):
        super().__init__()
        self.anchors: list[tuple[dict, dict]] = []
        self.last_penalty: float | None = None  # the latest term, for inspection

    def weight(self) -> float:
        raise NotImplementedError

    def before_backward(self, strategy, **kwargs):
        if not self.anchors:
            return
        term = quadratic_penalty(strategy.model, self.anchors, self.weight())
        self.last_penalty = float(term.detach())
        strategy.loss = strategy.loss + term
