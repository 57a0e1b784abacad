"""RanPAC (strategies/ranpac.py): the head weights are the ridge solution of the accumulated statistics (a numpy
solve of the same system), λ is the held-out choice over the authors' grid, the classifier does not depend on the
order of the experiences, and λ never sees the test split."""

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.runtime.randomness import derived_seed
from strategies.ranpac import RIDGES, RandomProjectionNet, RanPACConfig
from tests.task_fixtures import vector_net


def _net(widths, m=30):
    net = RandomProjectionNet(vector_net(nn.Identity(), 6, (8,), 0.0, widths), RanPACConfig(projection_dim=m))
    return net.double()


def _numpy_ridge(H, Y, held_out):
    """λ by brute force (fit on the other samples, squared error on the held-out ones), then the full solve."""
    fit, val = ~held_out, held_out
    errors = []
    for lam in RIDGES:
        W = np.linalg.solve(H[fit].T @ H[fit] + lam * np.eye(H.shape[1]), H[fit].T @ Y[fit])
        errors.append(((Y[val] - H[val] @ W) ** 2).sum())
    lam = RIDGES[int(np.argmin(errors))]
    return lam, np.linalg.solve(H.T @ H + lam * np.eye(H.shape[1]), H.T @ Y)


def test_weights_equal_a_numpy_solve_of_the_same_system_with_lambda_chosen_on_held_out_training_data():
    net = _net([2, 3])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0] * 20 + [1] * 30)
    y = torch.cat([torch.arange(20) % 2, torch.arange(30) % 3])
    net.start_experience(50, g)
    assert int(net.held_out.sum()) == 50 - int(50 * 0.8)  # the authors' int(0.8 N) fit samples
    for rows in (slice(0, 17), slice(17, 50)):
        net.accumulate(net.features(x[rows]), net.columns(y[rows], t[rows]))
    net.fit()
    H = np.maximum(x.numpy() @ net.projection.detach().numpy(), 0)  # ReLU(f W)
    Y = np.eye(5)[net.columns(y, t).numpy()]
    lam, W = _numpy_ridge(H, Y, net.held_out.numpy())
    assert net.ridges == [lam]
    np.testing.assert_allclose(net.heads[0].weight.detach().numpy(), W[:, :2].T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(net.heads[1].weight.detach().numpy(), W[:, 2:].T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(net(x, t)[:, :3].detach().numpy()[t.numpy() == 1], (H @ W)[20:, 2:], rtol=1e-6,
                               atol=1e-8)


def test_the_classifier_does_not_depend_on_the_order_of_the_experiences():
    g = torch.Generator().manual_seed(1)
    experiences = [(torch.randn(n, 6, generator=g, dtype=torch.float64), torch.arange(n) % 2 + 2 * e,
                    torch.rand(n, generator=g) < 0.2) for e, n in enumerate((40, 25, 33))]
    nets = [_net([6]), _net([6])]
    nets[1].projection.data.copy_(nets[0].projection.data.normal_(generator=g))
    for net, order in zip(nets, ([0, 1, 2], [2, 0, 1]), strict=True):
        for e in order:
            x, columns, held_out = experiences[e]
            net.add(net.represent(x), columns, held_out)
            net.solve()
    assert nets[0].ridges[-1] == nets[1].ridges[-1]
    torch.testing.assert_close(nets[0].heads[0].weight, nets[1].heads[0].weight, rtol=1e-8, atol=1e-10)


def test_a_class_not_seen_yet_never_wins():
    net = _net([4])
    x = torch.randn(20, 6, dtype=torch.float64)
    net.start_experience(20, torch.Generator().manual_seed(0))
    net.accumulate(x, torch.arange(20) % 2)
    net.fit()
    out = net(x, 0)
    assert torch.isneginf(out[:, 2:]).all() and torch.isfinite(out[:, :2]).all()


class RidgeProbe(SupervisedPlugin):
    """λ and the rows the strategy accumulated, after every experience; the projection after the first."""

    def __init__(self):
        super().__init__()
        self.ridges, self.rows, self.projection = [], 0, None

    def before_training_exp(self, strategy, **kwargs):
        accumulate = strategy.model.accumulate
        self.rows_before = self.rows

        def counting(feats, columns):
            self.rows += len(columns)
            return accumulate(feats, columns)

        strategy.model.accumulate = counting

    def after_training_exp(self, strategy, **kwargs):
        del strategy.model.accumulate
        self.ridges = list(strategy.model.ridges)
        self.weights = [h.weight.detach().clone() for h in strategy.model.heads]
        if self.projection is None:
            self.projection = strategy.model.projection.detach().clone()


def test_lambda_is_picked_from_training_data_only_and_the_projection_from_the_strategys_own_generator(tiny, tmp_path):
    probes = []
    for test_size in ("36", "24"):  # another test split: the same λ, the same weights
        probe = RidgeProbe()
        cfg, _ = parse_config(tiny("--strategy", "ranpac", "--backbone-mode", "frozen", "--ranpac.projection-dim",
                                   "64", "--binary_tasks.test-per-task", test_size, "--out-dir",
                                   str(tmp_path / test_size)))
        run(cfg, extra_plugins=[probe])
        probes.append(probe)
    assert probes[0].rows == 3 * 90  # the three experiences' training samples, once each; no test sample
    assert probes[0].ridges == probes[1].ridges and len(probes[0].ridges) == 3
    assert all(torch.equal(a, b) for a, b in zip(probes[0].weights, probes[1].weights, strict=True))
    assert set(probes[0].ridges) <= set(RIDGES)
    g = torch.Generator().manual_seed(derived_seed(0, "strategy", "ranpac"))
    expected = torch.randn(probes[0].projection.shape, generator=g, dtype=torch.float64).float()
    assert torch.equal(probes[0].projection, expected) and torch.equal(probes[1].projection, expected)


@pytest.mark.parametrize("bad", [("--ranpac.projection-dim", "0"), ("--ranpac.holdout", "1")])
def test_bad_knobs_are_one_error(bad, tiny):
    from benchmark.errors import UserError

    with pytest.raises(UserError, match="--ranpac.projection-dim must be ≥ 1 and --ranpac.holdout in"):
        parse_config(tiny("--strategy", "ranpac", "--backbone-mode", "frozen", *bad))
