"""Per-task gradient monitoring and declared task relations (benchmark/mtl/gradients.py) on hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.mtl import MultiTaskModel
from benchmark.mtl.gradients import (
    cosines,
    measured_relations,
    monitor,
    parse_relations_text,
    project_declared,
    relation_correction,
)

TASKS = ["a", "b", "c"]


def test_the_relations_flag_parses_pairs_and_the_report_puts_measured_beside_declared():
    assert parse_relations_text("a~b=negative, b~c=positive") == {("a", "b"): "negative", ("b", "c"): "positive"}
    with pytest.raises(UserError, match="a~b=relation"):
        parse_relations_text("a-b=negative")
    epochs = [{"gradients": {"shared_cosine": {"a~b": -0.2, "a~c": 0.4, "b~c": 0.0}}},
              {"gradients": {"shared_cosine": {"a~b": -0.4, "a~c": 0.2, "b~c": 0.1}}}]
    rows = measured_relations(epochs, {("a", "b"): "negative"}, TASKS)
    assert rows[0] == {"tasks": ["a", "b"], "declared": "negative", "shared_cosine_mean": pytest.approx(-0.3),
                       "shared_cosine_last": -0.4}
    assert [r["declared"] for r in rows[1:]] == ["undeclared", "undeclared"]


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


def test_a_negative_relation_projects_that_pairs_shared_gradients_apart_in_backward():
    torch.manual_seed(0)
    x, labels = torch.randn(8, 4), {t: torch.randint(0, 2, (8,)) for t in TASKS}
    plain = MultiTaskModel(TASKS, in_features=4, shared_layers=[3])
    declared = MultiTaskModel(TASKS, in_features=4, shared_layers=[3], task_relations={("b", "a"): "negative"})
    declared.load_state_dict(plain.state_dict())
    shared = plain.arch.shared_parameters()
    losses = plain.task_losses(plain(x), labels)
    g = {t: torch.cat([v.reshape(-1) for v in torch.autograd.grad(losses[t], shared, retain_graph=True)])
         for t in TASKS}
    assert float(g["a"] @ g["b"]) < 0, "the case must have a conflict to project"
    declared.backward(declared.task_losses(declared(x), labels))
    got = torch.cat([p.grad.reshape(-1) for p in declared.arch.shared_parameters()])
    assert torch.allclose(got, sum(project_declared(g, [("a", "b")]).values()), atol=1e-6)
    head = declared.heads["a"][-1].weight.grad  # task-specific parameters keep their plain gradient
    plain.backward(plain.task_losses(plain(x), labels))
    assert torch.allclose(head, plain.heads["a"][-1].weight.grad)
    with pytest.raises(UserError, match="pcgrad already projects"):
        MultiTaskModel(TASKS, in_features=4, loss_weighting="pcgrad", task_relations={("a", "b"): "negative"})


def test_a_run_reports_each_pairs_measured_relation_beside_the_declared_one(tmp_path, fmnist_root, capsys):
    import json

    from benchmark.cli import main
    from tests.test_golden import MTL_TINY

    args = ["mtl", "--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *MTL_TINY]
    assert main([*args, "--task-relations", "classes~coarse=positive,coarse~random=negative"]) == 0
    summary = json.loads(next((tmp_path / "mtl" / "runs").glob("*/seed0/summary.json")).read_text())
    rows = {tuple(r["tasks"]): r for r in summary["task_relations"]}
    assert len(rows) == 6 and rows[("classes", "coarse")]["declared"] == "positive"
    assert rows[("coarse", "random")]["declared"] == "negative"
    assert rows[("classes", "random")]["declared"] == "undeclared"
    cos = [e["gradients"]["shared_cosine"]["classes~coarse"] for e in summary["epochs"]]
    assert rows[("classes", "coarse")]["shared_cosine_mean"] == pytest.approx(sum(cos) / len(cos))
    assert main([*args, "--name", "typo", "--task-relations", "classes~cores=negative"]) == 2
    assert "--task-relations names unknown task(s) ['cores']" in capsys.readouterr().err
