"""`shared_parameters()` is what PCGrad projects: for every registered architecture it must hold exactly the
parameters that two or more task losses reach (checked with autograd, not by reading the code)."""

import pytest
import torch

from benchmark.mtl import ARCHITECTURES, MultiTaskModel

TASKS = ["a", "b", "c"]


def _reached_by(model: MultiTaskModel, x: torch.Tensor) -> dict[int, int]:
    """id(parameter) → number of task losses with a non-zero gradient on it."""
    labels = {t: torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(k))
              for k, t in enumerate(TASKS)}
    losses = model.task_losses(model(x), labels)
    params = list(model.parameters())
    count = dict.fromkeys(map(id, params), 0)
    for t in TASKS:
        for p, g in zip(params, torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True),
                        strict=True):
            if g is not None and bool(g.abs().sum() > 0):
                count[id(p)] += 1
    return count


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_shared_parameters_are_exactly_those_several_tasks_reach(architecture):
    torch.manual_seed(0)
    model = MultiTaskModel(TASKS, architecture=architecture, backbone="small_cnn", backbone_args={"channels": (4,)},
                           input_shape=(1, 8, 8), shared_layers=[6, 4], task_layers=[4], num_experts=2)
    count = _reached_by(model, torch.randn(8, 1, 8, 8))
    names = {id(p): n for n, p in model.named_parameters()}
    shared = {id(p) for p in model.arch.shared_parameters()}
    missing = sorted(names[i] for i, c in count.items() if c >= 2 and i not in shared)
    assert not missing, f"reached by >= 2 tasks but not declared shared (PCGrad would skip them): {missing}"
    private = sorted(names[i] for i, c in count.items() if c == 1 and i in shared)
    assert not private, f"reached by one task only but declared shared: {private}"
    assert any(c == 1 for c in count.values()), "every architecture has task-specific parameters (the heads)"
