"""The loss weightings, architectures and transfer metrics against their closed forms."""

import math

import pytest
import torch

from benchmark.errors import UserError
from benchmark.mtl import MultiTaskModel
from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES
from benchmark.mtl.schedules.curriculum import CurriculumConfig
from benchmark.mtl.transfer import delta_m, transfer_gain
from benchmark.mtl.weightings.dwa import dwa_weights
from benchmark.mtl.weightings.pcgrad import project_conflicting
from benchmark.mtl.weightings.static import parse_weights
from tests.mtl_fixtures import N_FEATURES, tiny_data, tiny_tasks


def test_uncertainty_equals_its_closed_form():
    model = MultiTaskModel(["a", "b", "c"], loss_weighting="uncertainty", in_features=4, shared_layers=[4])
    s = {"a": 0.3, "b": -1.2, "c": 2.0}
    with torch.no_grad():
        for t, v in s.items():
            model.weighting.log_vars[t].fill_(v)
    losses = {"a": torch.tensor(0.7), "b": torch.tensor(2.5), "c": torch.tensor(0.1)}
    expected = sum(math.exp(-s[t]) * float(losses[t]) + s[t] for t in s)
    assert float(model.weighting.combine(losses)) == pytest.approx(expected, rel=1e-6)
    # ∂L/∂s_t = 1 − exp(−s_t) L_t: the optimum is s_t = log L_t
    total = model.weighting.combine(losses)
    total.backward()
    for t in s:
        assert float(model.weighting.log_vars[t].grad) == pytest.approx(1 - math.exp(-s[t]) * float(losses[t]),
                                                                        rel=1e-5)


def test_pcgrad_projects_conflicting_gradients_onto_the_normal_plane():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # g1·g2 = −1 < 0: conflict
    out = project_conflicting(g)
    # g1 − (g1·g2/‖g2‖²) g2 = [1, 0] + ½[−1, 1];  g2 − (g2·g1/‖g1‖²) g1 = [−1, 1] + [1, 0]
    assert torch.allclose(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert float(out[0] @ g[1]) == pytest.approx(0.0) and float(out[1] @ g[0]) == pytest.approx(0.0)
    assert torch.equal(g, torch.tensor([[1.0, 0.0], [-1.0, 1.0]])), "the input is not modified"
    agree = torch.tensor([[1.0, 0.2], [0.5, 1.0]])
    assert torch.equal(project_conflicting(agree), agree)


def test_pcgrad_writes_the_projected_sum_into_the_shared_gradients():
    torch.manual_seed(0)
    model = MultiTaskModel(["a", "b"], loss_weighting="pcgrad", in_features=3, shared_layers=[4])
    x = torch.randn(6, 3)
    preds = model(x)
    losses = model.task_losses(preds, {"a": torch.randint(0, 2, (6,)), "b": torch.randint(0, 2, (6,))})
    shared = model.arch.shared_parameters()
    grads = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(losses[t], shared, retain_graph=True)])
                         for t in ("a", "b")])
    model.backward(losses)
    got = torch.cat([p.grad.flatten() for p in shared])
    assert torch.allclose(got, project_conflicting(grads).sum(0), atol=1e-6)


def test_gradnorm_weights_stay_positive_sum_to_T_and_adapt():
    torch.manual_seed(0)
    data = tiny_data()
    model = MultiTaskModel(data.tasks, loss_weighting="gradnorm", in_features=N_FEATURES, shared_layers=[16])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = data.x["train"], data.y["train"]
    for _ in range(15):
        opt.zero_grad()
        w = model.backward(model.task_losses(model(x), y))
        opt.step()
        assert all(v > 0 for v in w.values())
        assert sum(w.values()) == pytest.approx(3.0, rel=1e-5)
    assert max(abs(v - 1) for v in w.values()) > 1e-3, "the weights never moved"
    assert model.weighting.omega.grad is not None


def test_dwa_on_a_known_history():
    hist = {"a": [2.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.5]}  # r = 0.5, 1, 1.5
    w = dwa_weights(hist, ["a", "b", "c"], temperature=2.0)
    z = math.exp(0.25) + math.exp(0.5) + math.exp(0.75)
    assert w == pytest.approx({"a": 3 * math.exp(0.25) / z, "b": 3 * math.exp(0.5) / z, "c": 3 * math.exp(0.75) / z})
    assert sum(w.values()) == pytest.approx(3.0)
    assert dwa_weights({"a": [1.0], "b": [1.0, 2.0]}, ["a", "b"]) == {"a": 1.0, "b": 1.0}


def test_cross_stitch_with_identity_mixing_equals_independent_columns():
    torch.manual_seed(0)
    model = MultiTaskModel(["a", "b", "c"], architecture="cross-stitch", in_features=5, shared_layers=[6, 4])
    arch = model.arch
    assert not torch.allclose(arch.alphas[0], torch.eye(3))  # Misra's initialisation mixes a little
    with torch.no_grad():
        for a in arch.alphas:
            a.copy_(torch.eye(3))
    x = torch.randn(7, 5)
    reps = arch(x)
    for k, t in enumerate(["a", "b", "c"]):
        h = arch.backbone.pooled(arch.backbone(x))
        for block in arch.columns[k]:
            h = block(h)
        assert torch.allclose(reps[t], h, atol=1e-6)


def test_mmoe_gates_are_distributions_per_task():
    model = MultiTaskModel(["a", "b"], architecture="mmoe", num_experts=3, in_features=5, shared_layers=[4])
    g = model.arch.gate_weights(torch.randn(6, 5))
    assert g.shape == (2, 6, 3) and torch.allclose(g.sum(-1), torch.ones(2, 6))


def test_progressive_later_tasks_never_change_earlier_columns():
    torch.manual_seed(0)
    model = MultiTaskModel(["a", "b"], architecture="progressive", in_features=5, shared_layers=[4, 4])
    x = torch.randn(6, 5)
    loss = model.task_losses(model(x), {"b": torch.randint(0, 2, (6,))})["b"]
    loss.backward()
    col0 = [*model.arch.net.backbones[0].parameters(), *model.arch.net.columns[0].parameters(),
            *model.heads["a"].parameters()]
    assert all(p.grad is None for p in col0)
    assert any(p.grad is not None for p in model.arch.net.laterals[1].parameters())


def test_static_weights_parse_and_errors():
    assert parse_weights("1,0.5,1", ("a", "b", "c")) == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert parse_weights("b=2,a=1", ("a", "b")) == {"a": 1.0, "b": 2.0}
    with pytest.raises(UserError, match="3 values for 2 tasks"):
        parse_weights("1,2,3", ("a", "b"))
    with pytest.raises(UserError, match="miss"):
        parse_weights("a=1", ("a", "b"))
    model = MultiTaskModel(["a", "b"], loss_weights={"a": 1.0, "b": 0.5}, in_features=3, shared_layers=[4])
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}
    assert float(model.weighting.combine(losses)) == pytest.approx(4.0)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UserError, match="known: .*cross-stitch.*mmoe"):
        MultiTaskModel(["a"], architecture="mmo", in_features=3)
    with pytest.raises(UserError, match="known: .*dwa.*gradnorm"):
        MultiTaskModel(["a"], loss_weighting="grad_norm2", in_features=3)
    with pytest.raises(UserError, match="in_features"):  # left out, it is read at the first forward
        MultiTaskModel(["a"], in_features=0)


def test_curriculum_follows_the_toolkit_documents_schedule():
    stages = SCHEDULES.get("curriculum").build(CurriculumConfig(starts=(0, 10, 20)), epochs=30,
                                               tasks=("t1", "t2", "t3"))
    assert [(s.epochs, s.tasks) for s in stages] == [(10, ("t1",)), (10, ("t1", "t2")), (10, ("t1", "t2", "t3"))]
    assert stages[-1].eval_label == "after_joint"
    with pytest.raises(UserError, match="only 5 epochs"):
        SCHEDULES.get("curriculum").build(CurriculumConfig(starts=(0, 3, 5)), epochs=5, tasks=("a", "b", "c"))


def test_transfer_gain_and_delta_m():
    assert transfer_gain(0.9, 0.8) == pytest.approx(0.125)
    assert transfer_gain(0.9, 0.8, lower_is_better=True) == pytest.approx(-0.125)
    mtl, stl = {"a": 0.9, "b": 0.5, "loss": 2.0}, {"a": 0.8, "b": 0.625, "loss": 1.0}
    # (+0.125 − 0.2 − 1.0) / 3: a lower-is-better metric that doubled counts as −100 %
    assert delta_m(mtl, stl, lower_is_better={"loss"}) == pytest.approx((0.125 - 0.2 - 1.0) / 3)
    assert delta_m({"a": 0.9}, {}) is None and transfer_gain(0.5, 0.0) is None


def test_reconstruction_head_outputs_the_task_shape():
    model = MultiTaskModel(tiny_tasks(), in_features=N_FEATURES, shared_layers=[8])
    out = model.predict(torch.randn(4, N_FEATURES))
    assert out["recon"].shape == (4, N_FEATURES) and out["cls"].shape == (4,) and out["cls"].dtype == torch.long


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
@pytest.mark.parametrize("backbone,args", [("small_cnn", {"channels": (4,)}),
                                           ("vit_tiny", {"embed_dim": 8, "depth": 1, "num_heads": 2})])
@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_runs_on_both_image_backbones(architecture, backbone, args, pooling):
    torch.manual_seed(0)
    model = MultiTaskModel(["a", "b"], architecture=architecture, backbone=backbone, backbone_args=args,
                           input_shape=(1, 8, 8), shared_layers=[6], task_layers=[4], num_experts=2, pooling=pooling)
    tokens = model.arch.backbone(torch.randn(3, 1, 8, 8)) if hasattr(model.arch, "backbone") else \
        model.arch.net.backbones[0](torch.randn(3, 1, 8, 8))
    assert tokens.shape == ((3, 16, 4) if backbone == "small_cnn" else (3, 4, 8))  # CNN 4×4 positions; 2×2 patches
    x = torch.randn(3, 1, 8, 8)
    losses = model.task_losses(model(x), {"a": torch.tensor([0, 1, 0]), "b": torch.tensor([1, 1, 0])})
    model.backward(losses)
    first_layer = next(p for n, p in model.named_parameters() if "backbone" in n or "body" in n)
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0


def test_flatten_pooling_keeps_the_layout_and_mean_pooling_averages_it():
    from benchmark.models.layers import TokenBackbone

    tokens = torch.arange(12.0).view(1, 3, 4)  # B×N×D: 3 positions of 4 channels
    flat, mean = TokenBackbone(None, 4, n_tokens=3, pooling="flatten"), TokenBackbone(None, 4, n_tokens=3)
    assert torch.equal(flat.pooled(tokens), torch.arange(12.0).view(1, 12)) and flat.dim == 12
    assert torch.equal(mean.pooled(tokens), torch.tensor([[4.0, 5.0, 6.0, 7.0]])) and mean.dim == 4
    model = MultiTaskModel(["a", "b"], backbone="small_cnn", backbone_args={"channels": (4, 8)}, input_shape=(1, 8, 8),
                           shared_layers=[6], pooling="flatten")
    assert model.arch.trunk[0][0].in_features == 8 * 2 * 2  # channels × (8/4)² positions
    with pytest.raises(UserError, match="pooling"):
        MultiTaskModel(["a"], in_features=3, pooling="max")
