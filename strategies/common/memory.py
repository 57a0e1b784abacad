"""An episodic memory of past experiences' samples as tensors, for the gradient-projection and logit-replay
strategies (strategies/gem.py, der.py)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset


def sample_experience(dataset, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """n random samples (all, if fewer) of an Avalanche dataset, in its eval form → (x, y, t) tensors."""
    dataset = dataset.eval()
    order = torch.randperm(len(dataset), generator=generator)[:n].tolist()
    # the generator: a torch DataLoader draws a seed from the global generator otherwise
    # (benchmark/runtime/randomness.py)
    xs, ys, ts = zip(*DataLoader(Subset(dataset, order), batch_size=256, shuffle=False, generator=generator),
                     strict=True)
    return torch.cat(xs), torch.cat(ys), torch.cat(ts)


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Every parameter's gradient, flattened and concatenated (zeros where a parameter got none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def set_flat_grad(params: list[torch.nn.Parameter], flat: torch.Tensor, untouched=()) -> None:
    """Write `flat` back into the gradients. `untouched`: parameters the step's own backward gave no gradient
    (other tasks' heads); a memory backward gave them one, which goes back to None unless `flat` moves them."""
    start = 0
    for p in params:
        n = p.numel()
        if p.grad is not None:
            p.grad.copy_(flat[start:start + n].view_as(p))
        start += n
    for p in untouched:
        if p.grad is not None and not p.grad.any():
            p.grad = None
