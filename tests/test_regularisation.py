"""EWC, SI and MAS by their defining formulas on hand-made models and data, and the hook-name check."""

from __future__ import annotations

import types

import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.plugin_check import check_plugin_hooks
from benchmark.harness.run import run
from strategies.common.importance import per_sample_importance, quadratic_penalty
from strategies.ewc import EWCConfig, EWCPlugin
from strategies.mas import MASConfig, MASPlugin
from strategies.si import SIConfig, SIPlugin


class Linear(torch.nn.Module):
    """forward(x, t) = W x + b for every task (one head), the model interface the plugins use."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = torch.nn.Parameter(torch.tensor(w)), torch.nn.Parameter(torch.tensor(b))

    def forward(self, x, t):
        return x @ self.w.T + self.b

    def forward_single_task(self, x, t):
        return self(x, t)


class Data(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], 0

    def eval(self):
        return self


def strategy_for(model, x, y, criterion=torch.nn.CrossEntropyLoss()):
    return types.SimpleNamespace(model=model, experience=types.SimpleNamespace(dataset=Data(x, y)), device="cpu",
                                 _criterion=criterion, loss=torch.zeros(()))


X = torch.tensor([[1.0, 2.0], [0.5, -1.0], [-2.0, 0.0]])
Y = torch.tensor([0, 1, 1])


def model():
    return Linear([[0.1, -0.2], [0.3, 0.4]], [0.0, 0.1])


def per_sample_grads(m, fn):
    grads = []
    for x, y in zip(X, Y, strict=True):
        m.zero_grad()
        fn(m, x[None], y[None]).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    return grads


def test_ewc_fisher_is_the_mean_of_per_sample_squared_gradients():
    m = model()
    fisher = per_sample_importance(strategy_for(m, X, Y), 100,
                                   lambda mod, x, y, t: (torch.nn.functional.cross_entropy(mod(x, t), y),
                                                         lambda g: g**2), torch.Generator())
    grads = per_sample_grads(m, lambda mod, x, y: torch.nn.functional.cross_entropy(mod(x, 0), y))
    for name in ("w", "b"):
        assert torch.allclose(fisher[name], sum(g[name] ** 2 for g in grads) / 3)


def test_ewc_penalty_is_half_lambda_fisher_weighted_squared_distance():
    m, plugin = model(), EWCPlugin(EWCConfig(ewc_lambda=3.0, mode="separate"))
    f = {"w": torch.tensor([[1.0, 2.0], [0.0, 0.5]]), "b": torch.tensor([4.0, 0.0])}
    star = {"w": torch.zeros(2, 2), "b": torch.tensor([0.5, 0.0])}
    plugin.anchors = [(f, star)]
    strategy = strategy_for(m, X, Y)
    plugin.before_backward(strategy)
    expected = 0.5 * 3.0 * (1 * 0.1**2 + 2 * 0.2**2 + 0 + 0.5 * 0.4**2 + 4 * (0.0 - 0.5) ** 2)
    assert float(strategy.loss) == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["online", "separate"])
def test_ewc_online_decays_and_sums_fishers_separate_keeps_one_penalty_per_task(mode):
    m, plugin = model(), EWCPlugin(EWCConfig(ewc_lambda=1.0, mode=mode, decay=0.5))
    strategy = strategy_for(m, X, Y)
    plugin.after_training_exp(strategy)
    first = {n: v.clone() for n, v in plugin.anchors[0][0].items()}
    with torch.no_grad():
        m.w += 1.0
    plugin.after_training_exp(strategy)
    second = per_sample_importance(strategy, 512, lambda mod, x, y, t: (
        torch.nn.functional.cross_entropy(mod(x, t), y), lambda g: g**2), torch.Generator())
    if mode == "online":
        (fisher, star), = plugin.anchors
        assert torch.allclose(fisher["w"], 0.5 * first["w"] + second["w"]) and torch.equal(star["w"], m.w.detach())
    else:
        assert len(plugin.anchors) == 2 and torch.allclose(plugin.anchors[1][0]["w"], second["w"])


def test_si_importance_is_the_path_integral_over_the_squared_distance_travelled():
    """Plain SGD (lr η) on L = ½ Σ (θ − a)²: g = θ − a, Δθ = −η g, so ω = Σ_steps η g² and Ω = ω / (Δ² + ξ)."""
    theta, a, lr, xi = torch.nn.Parameter(torch.tensor([1.0, -2.0])), torch.tensor([0.0, 1.0]), 0.1, 0.5
    m = torch.nn.Module()
    m.theta = theta
    plugin, strategy = SIPlugin(SIConfig(c=2.0, xi=xi)), types.SimpleNamespace(model=m, loss=torch.zeros(()))
    opt = torch.optim.SGD([theta], lr=lr)
    plugin.before_training_exp(strategy)
    start, omega = theta.detach().clone(), torch.zeros(2)
    for _ in range(5):
        opt.zero_grad()
        strategy.loss = 0.5 * ((theta - a) ** 2).sum()
        plugin.before_backward(strategy)  # the task's gradient (no anchor yet: no penalty)
        strategy.loss.backward()
        omega += lr * theta.grad.detach() ** 2
        plugin.before_update(strategy)
        opt.step()
        plugin.after_update(strategy)
    plugin.after_training_exp(strategy)
    (big_omega, star), = plugin.anchors
    expected = omega / ((theta.detach() - start) ** 2 + xi)
    assert torch.allclose(big_omega["theta"], expected) and torch.equal(star["theta"], theta.detach())
    with torch.no_grad():
        theta += 1.0
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)
    assert float(strategy.loss) == pytest.approx(float(2.0 * (expected * 1.0).sum()))


def test_mas_importance_is_the_mean_absolute_gradient_of_the_squared_output_norm():
    m, plugin = model(), MASPlugin(MASConfig(mas_lambda=1.0, alpha=0.25))
    strategy = strategy_for(m, X, Y)
    plugin.after_training_exp(strategy)
    omega, _ = plugin.anchors[0]
    w, b = m.w.detach(), m.b.detach()
    # ∂‖Wx + b‖²/∂W = 2 (Wx + b) xᵀ, ∂/∂b = 2 (Wx + b)
    out = X @ w.T + b
    assert torch.allclose(omega["w"], (2 * out[:, :, None] * X[:, None, :]).abs().mean(0))
    assert torch.allclose(omega["b"], (2 * out).abs().mean(0))
    plugin.after_training_exp(strategy)  # same importances again: α·Ω + (1 − α)·Ω = Ω
    assert torch.allclose(plugin.anchors[0][0]["w"], omega["w"])


def test_quadratic_penalty_only_counts_parameters_with_an_importance():
    m = model()
    zero = {"w": torch.zeros(2, 2)}
    assert float(quadratic_penalty(m, [({"w": torch.ones(2, 2)}, zero)], 1.0)) == pytest.approx(0.01 + 0.04 + 0.09 +
                                                                                                  0.16)


class MisspeltPlugin(SupervisedPlugin):
    def before_backwards(self, strategy, **kwargs):  # never called by Avalanche
        strategy.loss = strategy.loss * 0


def test_a_misspelt_hook_is_an_error_naming_the_real_one(tiny):
    with pytest.raises(UserError, match=r"MisspeltPlugin defines 'before_backwards' \(did you mean "
                                        r"'before_backward'\?\)"):
        check_plugin_hooks(types.SimpleNamespace(plugins=[MisspeltPlugin()]))
    cfg, _ = parse_config(tiny("--strategy", "naive"))
    with pytest.raises(UserError, match="before_backwards"):
        run(cfg, extra_plugins=[MisspeltPlugin()])
    assert not (cfg.out_dir / "runs" / "binary_tasks" / "naive" / "seed0" / "matrix.csv").exists()


def test_si_importance_is_clipped_at_zero_after_each_task():
    """Zenke et al.'s code: Ω ← relu(Ω + ω / (Δ² + ξ)); a parameter whose steps raised the loss gets Ω = 0."""
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    m = torch.nn.Module()
    m.theta = theta
    plugin, strategy = SIPlugin(SIConfig(c=1.0, xi=0.5)), types.SimpleNamespace(model=m)
    plugin.before_training_exp(strategy)
    with torch.no_grad():
        theta += torch.tensor([1.0, 1.0])  # Δ² = 1
    plugin.omega = {"theta": torch.tensor([-3.0, 3.0])}
    plugin.after_training_exp(strategy)
    assert torch.equal(plugin.omega_total["theta"], torch.tensor([0.0, 2.0]))  # 3 / (1 + 0.5) = 2; −2 → 0


class AddsATerm(SupervisedPlugin):
    """Another strategy's term (LwF's, DER's …): 3 Σθ² added to the loss before backward."""

    def before_backward(self, strategy, **kwargs):
        strategy.loss = strategy.loss + 3 * (strategy.model.theta ** 2).sum()


@pytest.mark.parametrize("si_first", [True, False])
def test_si_path_integral_uses_the_tasks_own_gradient_whatever_else_adds_to_the_loss(si_first):
    """ω's g is the gradient of the task's loss alone (Zenke et al.'s 'unreg_grads'): not SI's own penalty, not a
    composed strategy's term, whichever runs first; the step itself uses the total gradient."""
    from benchmark.harness.harness_plugins import TaskLoss

    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    m = torch.nn.Module()
    m.theta = theta
    si, other, recorder = SIPlugin(SIConfig(c=5.0, xi=0.5)), AddsATerm(), TaskLoss()
    si.anchors = [({"theta": torch.tensor([2.0, 1.0])}, {"theta": torch.tensor([0.0, 0.0])})]  # a penalty applies
    strategy = types.SimpleNamespace(model=m)
    si.before_training_exp(strategy)
    a = torch.tensor([0.5, 0.5])
    strategy.loss = 0.5 * ((theta - a) ** 2).sum()  # task gradient θ − a
    recorder.before_backward(strategy)
    for plugin in ([si, other] if si_first else [other, si]):
        plugin.before_backward(strategy)
    strategy.loss.backward()
    assert torch.allclose(si._grad["theta"], theta.detach() - a)
    total = (theta - a) + 6 * theta + 5 * 2 * torch.tensor([2.0, 1.0]) * theta  # task + other + SI's penalty
    assert torch.allclose(theta.grad, total.detach())


def test_avalanches_si_records_a_view_of_the_live_parameter_so_its_path_integral_is_zero_on_the_cpu():
    """What strategies/si.py's docstring says of Avalanche's SynapticIntelligencePlugin, checked: its θ before and
    after a step are views of the parameter itself on the CPU, so the step it integrates is 0 (not −lr·g)."""
    from avalanche.training.plugins import SynapticIntelligencePlugin as AvalancheSI

    model = torch.nn.Linear(2, 1)
    plugin = AvalancheSI(si_lambda=1.0)
    AvalancheSI.create_syn_data(model, plugin.ewc_data, plugin.syn_data, set())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    AvalancheSI.pre_update(model, plugin.syn_data, set())
    before = model.weight.detach().clone()
    opt.step()
    AvalancheSI.post_update(model, plugin.syn_data, set())
    assert not torch.equal(model.weight.detach(), before)  # the parameter did move
    assert (plugin.syn_data["trajectory"]["weight"].data == 0).all()  # and Avalanche's SI saw no step
