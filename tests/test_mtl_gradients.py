"""Per-task gradient monitoring and declared task relations (benchmark/mtl/gradients.py) on hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.mtl import MultiTaskModel
from benchmark.mtl.gradients import cosines, monitor, parse_relations, project_declared, relation_correction

TASKS = ["a", "b", "c"]


def test_relations_are_validated_and_ordered_by_task():
    assert parse_relations({("b", "a"): "negative", ("a", "c"): "positive"}, TASKS) == {
        ("a", "b"): "negative", ("a", "c"): "positive"}
    for bad, match in [({("a", "z"): "positive"}, "pairs of two different tasks"),
                       ({("a", "a"): "positive"}, "pairs of two different tasks"),
                       ({("a", "b"): "friendly"}, "one of positive, negative, neutral"),
                       ({("a", "b"): "positive", ("b", "a"): "negative"}, "both 'positive' and 'negative'")]:
        with pytest.raises(UserError, match=match):
            parse_relations(bad, TASKS)


def test_cosines_and_the_declared_pair_projection_follow_their_formulas():
    g = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([-1.0, 1.0]), "c": torch.tensor([0.0, 2.0])}
    cos = cosines(g)
    assert cos == pytest.approx({"a~b": -2 ** -0.5, "a~c": 0.0, "b~c": 2 ** -0.5})
    out = project_declared(g, [("a", "b")])
    # a ← a − (a·b/‖b‖²) b = (1, 0) + ½(−1, 1);  b ← b − (a·b/‖a‖²) a = (−1, 1) + (1, 0)
    assert torch.allclose(out["a"], torch.tensor([0.5, 0.5])) and torch.allclose(out["b"], torch.tensor([0.0, 1.0]))
    assert float(out["a"] @ g["b"]) == pytest.approx(0) and torch.equal(out["c"], g["c"])
    assert torch.equal(project_declared(g, [("b", "c")])["b"], g["b"])  # no conflict: untouched


def _model():
    torch.manual_seed(0)
    return MultiTaskModel(TASKS, in_features=4, shared_layers=[3])


def test_the_correction_turns_the_summed_shared_gradient_into_the_projected_sum():
    model, x = _model(), torch.randn(8, 4)
    labels = {t: torch.randint(0, 2, (8,)) for t in TASKS}
    losses = model.task_losses(model(x), labels)
    shared = model.arch.shared_parameters()
    per_task = {t: torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], shared, retain_graph=True)])
                for t in TASKS}
    correction = relation_correction(losses, shared, [("a", "b")])
    assert torch.allclose(correction + sum(per_task.values()),
                          sum(project_declared(per_task, [("a", "b")]).values()), atol=1e-6)


def test_monitoring_reads_gradients_without_touching_weights_grads_or_randomness():
    model, x = _model(), torch.randn(8, 4)
    labels = {t: torch.randint(0, 2, (8,)) for t in TASKS}
    before = [p.detach().clone() for p in model.parameters()]
    state = torch.get_rng_state()
    record = monitor(model, x, labels)
    assert torch.equal(state, torch.get_rng_state()) and model.training
    assert all(torch.equal(a, p) and p.grad is None for a, p in zip(before, model.parameters(), strict=True))
    last = model.arch.last_shared_parameters()
    model.eval()
    losses = model.task_losses(model(x), labels)
    g = {t: torch.cat([v.reshape(-1) for v in torch.autograd.grad(losses[t], last, retain_graph=True)]) for t in TASKS}
    assert record["last_shared_norm"] == pytest.approx({t: float(v.norm()) for t, v in g.items()})
    assert record["last_shared_cosine"] == pytest.approx(cosines(g))
    assert set(record["shared_cosine"]) == {"a~b", "a~c", "b~c"}
