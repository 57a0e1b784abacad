"""SLCA's defining behaviour on hand-made tensors: the stored class statistics, the Gaussian sampler, an alignment
that trains the heads alone on the sampler's draws (not on data), the class-IL local cross-entropy, and the slow
learner's optimizer groups."""

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.model_export import build_strategy
from benchmark.models.hatswap_net import build_net
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import own_generator
from benchmark.tasks import TaskSpec
from strategies.slca import (
    COV_RIDGE,
    ClassGaussian,
    SLCAConfig,
    SLCAPlugin,
    class_gaussians,
    normalised_logits,
)
from tests.task_fixtures import vector_net

D_IN, D = 6, 5  # input width; the shared layers' width (what the heads read)


def _net(widths=(3, 2)):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(D_IN, 8), nn.Tanh())
    return vector_net(backbone, 8, (D,), 0.3, list(widths))  # dropout: the statistics must be taken in eval mode


def _experience(task: int, classes, n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes).repeat_interleave(n)
    x = torch.randn(len(y), D_IN, generator=g) + y[:, None].float()  # each class somewhere else
    ds = TensorDataset(x, y, torch.full((len(y),), task))
    ds.targets = types.SimpleNamespace(uniques=set(classes))
    return types.SimpleNamespace(task_labels=[task], dataset=ds)


def _strategy(model, scenario="task-il"):
    return types.SimpleNamespace(model=model, eval_mb_size=16, device="cpu", scenario=scenario, run_seed=3,
                                 optimizer=torch.optim.Adam(model.parameters()))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_stored_statistics_are_each_class_mean_and_covariance_of_the_heads_input():
    model = _net()
    plugin, strat = SLCAPlugin(SLCAConfig()), _strategy(model)
    strat.experience = _experience(1, [0, 1])
    model.train()
    plugin.store_statistics(strat)
    assert model.training  # left as it was
    x, y = strat.experience.dataset.tensors[:2]
    model.eval()
    with torch.no_grad():
        feats = model.features(x).double().numpy()  # shared(backbone(x)), no dropout: what head 1 reads
    for c in (0, 1):
        g = plugin.gaussians[(1, c)]
        f = feats[y.numpy() == c]
        np.testing.assert_allclose(g.mean.numpy(), f.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(g.cov.numpy(), np.cov(f.T) + COV_RIDGE * np.eye(D), rtol=1e-6, atol=1e-9)
        assert g.experience == 0
    assert plugin.groups == {1: [[0, 1]]} and set(plugin.gaussians) == {(1, 0), (1, 1)}


def test_the_sampler_draws_from_the_stored_gaussian():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    mean, cov = torch.tensor(rng.normal(size=4)), torch.tensor(a @ a.T + 0.5 * np.eye(4))
    g = ClassGaussian(mean, cov, experience=0)
    draws = g.sample(200_000, torch.Generator().manual_seed(1))
    np.testing.assert_allclose(draws.mean(0).numpy(), mean.numpy(), atol=0.02)
    np.testing.assert_allclose(np.cov(draws.numpy().T), cov.numpy(), atol=0.05)
    shrunk = g.sample(200_000, torch.Generator().manual_seed(1), scale=0.9)
    np.testing.assert_allclose(shrunk.mean(0).numpy(), 0.9 * mean.numpy(), atol=0.02)
    first, again = (g.sample(5, torch.Generator().manual_seed(s)) for s in (1, 1))
    assert torch.equal(first, again) and not torch.equal(first, g.sample(5, torch.Generator().manual_seed(2)))


def _two_experiences(scenario: str, cfg=SLCAConfig(ca_epochs=2, samples_per_class=32)):
    """The plugin through two experiences of a task-IL (heads 0, 1) or class-IL (one head over 4 classes) net."""
    model = _net((2, 2)) if scenario == "task-il" else _net((4,))
    plugin, strat = SLCAPlugin(cfg), _strategy(model, scenario)
    for t, classes in enumerate([[0, 1], [0, 1]] if scenario == "task-il" else [[0, 1], [2, 3]]):
        strat.experience = _experience(t if scenario == "task-il" else 0, classes, seed=t)
        plugin.before_training_exp(strat)
        if t == 1:
            before = _snapshot(model)
            with torch.no_grad():
                data_feats = model.eval().features(strat.experience.dataset.tensors[0])
            model.train()
        plugin.after_training_exp(strat)
    return model, plugin, strat, before, data_feats


@pytest.mark.parametrize("scenario", ["task-il", "class-il"])
def test_alignment_trains_the_heads_alone_on_draws_from_the_stored_gaussians(scenario):
    model, plugin, strat, before, data_feats = _two_experiences(scenario)
    after = _snapshot(model)
    heads = [k for k in after if k.startswith("heads.")]
    assert heads and all(not torch.equal(after[k], before[k]) for k in heads)  # every head aligned
    assert all(torch.equal(after[k], before[k]) for k in after if k not in heads)  # backbone and shared untouched
    assert all(p.grad is None for p in model.parameters())  # no alignment gradient left for the run's optimizer
    # the alignment's inputs are the sampler's draws, epoch by epoch, from the strategy's own generator
    replay = SLCAPlugin(plugin.cfg)
    replay.gaussians, replay.groups, replay.trained = plugin.gaussians, plugin.groups, plugin.trained
    gen = torch.Generator().manual_seed(own_generator(types.SimpleNamespace(run_seed=3), "slca").initial_seed())
    expected = torch.cat([replay.draws(gen)[0] for _ in range(plugin.cfg.ca_epochs)]).float()
    assert torch.equal(torch.cat(plugin.aligned_on), expected)
    n_classes = len(plugin.gaussians)
    assert len(expected) == plugin.cfg.ca_epochs * n_classes * plugin.cfg.samples_per_class and n_classes == 4


def test_draws_cover_every_seen_class_and_shrink_older_means_as_the_repo():
    _, plugin, *_ = _two_experiences("class-il")
    gen = torch.Generator().manual_seed(0)
    plugin.cfg = SLCAConfig(samples_per_class=20_000)
    x, heads, classes = plugin.draws(gen)
    assert set(heads.tolist()) == {0} and sorted(set(classes.tolist())) == [0, 1, 2, 3]
    for c in range(4):
        g = plugin.gaussians[(0, c)]
        scale = 0.9 + 0.1 * (g.experience + 1) / 2  # experience 0's classes: 0.95; experience 1's: 1.0
        np.testing.assert_allclose(x[classes == c].mean(0).numpy(), scale * g.mean.numpy(), atol=0.03)


def test_the_alignment_loss_is_each_heads_normalised_cross_entropy_over_its_seen_classes():
    model, plugin, *_ = _two_experiences("task-il")
    x = torch.randn(6, D)
    heads, classes = torch.tensor([0, 1, 1, 0, 1, 1]), torch.tensor([1, 0, 1, 0, 0, 1])
    by_hand = 0.0
    for h in (0, 1):
        rows = heads == h
        z = model.heads[h](x[rows])
        z = z / (z.norm(dim=1, keepdim=True) + 1e-7) / 0.1  # one group per task-IL head
        by_hand += rows.sum() / 6 * F.cross_entropy(z, classes[rows])
    assert float(plugin.alignment_loss(model, x, heads, classes)) == pytest.approx(float(by_hand), rel=1e-6)


def test_logit_normalisation_divides_by_the_mean_of_the_groups_norms():
    z = torch.tensor([[3.0, 4.0, 0.0, 1.0, 0.0]])
    norms = (5.0 + 1.0) / 2  # groups [0, 1] → ‖(3, 4)‖ = 5, [2, 3, 4] → ‖(0, 1, 0)‖ = 1
    got = normalised_logits(z, [[0, 1], [2, 3, 4]], 0.1)
    assert torch.allclose(got, z / norms / 0.1, rtol=1e-6)
    assert torch.equal(normalised_logits(z, [[0, 1], [2, 3, 4]], 0.0), z)


def test_class_il_training_takes_the_cross_entropy_over_the_current_classes_only():
    model, plugin, strat, *_ = _two_experiences("class-il")
    strat.experience = _experience(0, [2, 3])
    plugin.before_training_exp(strat)
    out = torch.randn(3, 4, requires_grad=True)
    strat.mb_output = out
    plugin.after_forward(strat)
    assert torch.isinf(strat.mb_output[:, :2]).all() and torch.equal(strat.mb_output[:, 2:], out[:, 2:])
    y = torch.tensor([2, 3, 3])
    F.cross_entropy(strat.mb_output, y).backward()
    assert torch.allclose(F.cross_entropy(strat.mb_output, y), F.cross_entropy(out[:, 2:], y - 2))
    assert (out.grad[:, :2] == 0).all() and (out.grad[:, 2:] != 0).any()


def test_the_next_experience_trains_on_from_the_heads_before_alignment():
    model, plugin, strat, *_ = _two_experiences("task-il")
    aligned = _snapshot(model.heads)
    strat.experience = _experience(1, [0, 1])
    strat.optimizer.state[model.heads[0].weight] = {"step": torch.tensor(3.0)}  # moments of the last experience
    plugin.before_training_exp(strat)
    restored = _snapshot(model.heads)
    assert all(torch.equal(restored[k], plugin.before_alignment[k]) for k in restored)
    assert any(not torch.equal(restored[k], aligned[k]) for k in restored)
    assert not strat.optimizer.state  # a new optimizer per task, as the repo's _stage1_training


def test_alignment_waits_for_the_second_experience():
    model = _net()
    plugin, strat = SLCAPlugin(SLCAConfig(ca_epochs=2, samples_per_class=8)), _strategy(model)
    strat.experience = _experience(0, [0, 1, 2])
    before = _snapshot(model)
    plugin.before_training_exp(strat)
    plugin.after_training_exp(strat)
    assert plugin.aligned_on == [] and all(torch.equal(v, before[k]) for k, v in _snapshot(model).items())


def _groups(cfg):
    net = _net()
    strategy = build_strategy(cfg, net, [], net.tasks, torch.device("cpu"))
    backbone = {id(p) for p in net.backbone.parameters()}
    return [({id(p) in backbone for p in g["params"]}, g["lr"]) for g in strategy.optimizer.param_groups]


def test_the_backbone_learns_at_the_ratio_times_the_classifiers_rate():
    cfg, _ = parse_config(["--strategy", "slca", "--lr", "0.002", "--slca.backbone-lr-ratio", "0.05"])
    (bb, bb_lr), (rest, rest_lr) = _groups(cfg)
    assert bb == {True} and rest == {False}  # group 0: the backbone alone; group 1: shared layers and heads
    assert bb_lr == pytest.approx(0.05 * rest_lr) and rest_lr == 0.002
    naive, _ = parse_config(["--strategy", "naive", "--lr", "0.002"])
    assert [lr for _, lr in _groups(naive)] == [0.002, 0.002]  # no other strategy's groups move
    backbone_lr, _ = parse_config(["--strategy", "naive", "--lr", "0.002", "--backbone-lr", "1e-5"])
    assert [lr for _, lr in _groups(backbone_lr)] == [1e-5, 0.002]


def test_bad_settings_and_heads_it_cannot_align_are_one_error():
    with pytest.raises(UserError, match="leave --backbone-lr at 0"):
        parse_config(["--strategy", "slca", "--backbone-lr", "1e-5"])
    with pytest.raises(UserError, match="use --backbone-mode frozen"):
        SLCAConfig(backbone_lr_ratio=0)
    with pytest.raises(UserError, match="runs in --scenario task-il or class-il only"):
        parse_config(["--strategy", "slca", "--scenario", "domain-il"])
    seg = types.SimpleNamespace(kind="segmentation")  # refuse_tasks reads a spec's kind
    with pytest.raises(UserError, match="trains heads of kind binary or multiclass only; this run's heads are "
                                        "segmentation"):
        STRATEGIES.get("slca").meta.refuse_tasks("slca", [seg])
    STRATEGIES.get("naive").meta.refuse_tasks("naive", [seg])  # a strategy that declares no kinds takes every one


def test_class_gaussians_of_a_single_sample_class_is_the_ridge_alone():
    feats, labels = torch.tensor([[1.0, 2.0], [0.0, 0.0], [2.0, 2.0]]), torch.tensor([0, 1, 1])
    stats = class_gaussians(feats, labels, experience=4)
    assert torch.equal(stats[0].cov, COV_RIDGE * torch.eye(2, dtype=torch.float64))
    assert torch.allclose(stats[1].mean, torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert stats[1].experience == 4


def test_without_hidden_layers_the_statistics_are_of_the_backbones_output_as_in_the_repo():
    """`--hidden ""`: the heads read the backbone's output, the repo's setting (its fc reads the ViT's features)."""
    model = build_net(nn.Identity(), [TaskSpec("a", "multiclass", params={"num_classes": 3})], feat_dim=4,
                      hidden=())
    plugin, strat = SLCAPlugin(SLCAConfig()), _strategy(model, "class-il")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=g), torch.arange(3).repeat(10)
    ds = TensorDataset(x, y, torch.zeros(30, dtype=torch.long))
    strat.experience = types.SimpleNamespace(task_labels=[0], dataset=ds)
    plugin.store_statistics(strat)
    assert torch.allclose(plugin.gaussians[(0, 2)].mean, x[y == 2].double().mean(0))  # no hidden layers: x itself
