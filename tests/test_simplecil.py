"""SimpleCIL (strategies/simplecil.py): prototypes are the class means of the backbone's features, the classifier is
their cosine with the feature, classes not seen yet never win, and nothing is trained."""

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import nn

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.run import run
from benchmark.outputs.results import read_matrix
from strategies.simplecil import PrototypeNet, SimpleCILConfig
from tests.task_fixtures import vector_net


def _net(widths, scale=1.0):
    torch.manual_seed(0)  # the shared layers (hidden 8) are random: the prototypes must not go through them
    return PrototypeNet(vector_net(nn.Identity(), 5, (8,), 0.0, widths), SimpleCILConfig(scale=scale))


def test_prototypes_are_the_class_means_of_the_backbone_features_and_logits_their_scaled_cosine():
    net = _net([2, 3], scale=4.0)
    g = torch.Generator().manual_seed(1)
    x, y, t = torch.randn(40, 5, generator=g), torch.tensor([0, 1] * 20), torch.tensor([0] * 20 + [1] * 20)
    y[20:] = torch.arange(20) % 3
    for rows in (slice(0, 13), slice(13, 40)):  # two batches: sums and counts, not a mean per batch
        net.accumulate(net.features(x[rows]), net.columns(y[rows], t[rows]))
    net.fit()
    for task, k in ((0, 2), (1, 3)):
        for c in range(k):
            expected = x[(t == task) & (y == c)].mean(0)
            torch.testing.assert_close(net.heads[task].prototypes[c], expected, rtol=1e-6, atol=1e-7)
    q = torch.randn(6, 5, generator=g)
    by_hand = torch.stack([4.0 * F.cosine_similarity(q, x[(t == 1) & (y == c)].mean(0).expand_as(q))
                           for c in range(3)], 1)
    torch.testing.assert_close(net(q, 1)[:, :3], by_hand, rtol=1e-5, atol=1e-6)
    assert torch.isinf(net(q, 0)[:, 2]).all()  # task 0's row padded past its 2 classes


def test_a_class_not_seen_yet_never_wins_and_an_untrained_head_is_uniform():
    net = _net([4])  # one head over 4 classes, as class-IL builds it
    q = torch.randn(5, 5)
    assert torch.equal(net(q, 0), torch.zeros(5, 4))  # before any experience: no prototype, every logit 0
    feats = torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    net.accumulate(feats, torch.tensor([0, 1]))
    net.fit()
    out = net(-feats, 0)  # features opposite to both prototypes: cosine -1 for the seen classes
    assert torch.isneginf(out[:, 2:]).all() and (out[:, :2] >= -1).all() and set(out.argmax(1).tolist()) <= {0, 1}


def test_the_shared_layers_are_not_used():
    a, b = _net([2]), _net([2])
    with torch.no_grad():
        b.heads[0].prototypes.zero_()
    torch.manual_seed(5)
    other = PrototypeNet(vector_net(nn.Identity(), 5, (8,), 0.0, [2]), SimpleCILConfig())  # other shared weights
    x = torch.randn(10, 5)
    for net in (a, other):
        net.accumulate(net.features(x), torch.tensor([0, 1] * 5))
        net.fit()
    assert torch.equal(a(x, 0), other(x, 0))
    assert sum(p.numel() for p in a.parameters()) == 2 * 5  # the prototypes; no shared layer, no linear head


class NoTraining(SupervisedPlugin):
    """Forbids any optimizer step; records every parameter of the strategy's network before and after training."""

    def __init__(self):
        super().__init__()
        self.before, self.after = {}, {}

    def before_training(self, strategy, **kwargs):  # the harness trains one experience per call
        strategy.optimizer.step = self.refuse
        if not self.before:
            self.before = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}

    @staticmethod
    def refuse(*args, **kwargs):
        raise AssertionError("a training-free strategy stepped its optimizer")

    def after_training(self, strategy, **kwargs):
        self.after = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}


def test_it_is_training_free_no_optimizer_step_and_only_the_prototypes_move(tiny):
    probe = NoTraining()
    cfg, _ = parse_config(tiny("--strategy", "simplecil", "--backbone-mode", "frozen", "--no-feature-cache"))
    folder, _ = run(cfg, extra_plugins=[probe])
    moved = {n for n in probe.before if not torch.equal(probe.before[n], probe.after[n])}
    assert moved == {f"heads.{t}.prototypes" for t in range(3)}
    assert any(n.startswith("backbone.") for n in probe.before)  # the backbone ran (uncached) and stayed put
    assert not any(p.requires_grad for p in probe.before.values())
    R = read_matrix(folder / "matrix.csv")[2]
    assert R[0] != R[-1]  # the untrained head (all logits 0) differs from the fitted one


def test_finetune_is_refused_in_one_line(tiny, capsys):
    assert main(["run", *tiny("--strategy", "simplecil", "--backbone-mode", "finetune")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is training-free" in err[0] and "pass --backbone-mode frozen (not finetune)" in err[0]


def test_a_stream_of_dense_tasks_is_refused_in_one_line(tiny_dense, capsys):
    assert main(["run", *tiny_dense("--strategy", "simplecil", "--backbone-mode", "frozen")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hatswap: error:")]
    assert len(errors) == 1 and "segmentation" in errors[0]
    assert "trains heads of kind binary or multiclass only" in errors[0]


def test_a_resampling_sampler_is_refused_for_a_closed_form_fit():
    with pytest.raises(UserError, match="--sampler class-balanced cannot apply to --strategy simplecil"):
        parse_config(["--strategy", "simplecil", "--backbone-mode", "frozen", "--sampler", "class-balanced"])
