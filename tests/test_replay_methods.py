"""A-GEM, GEM, DER++ and GDumb by their defining behaviour on hand-made tensors and a tiny stream."""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest
import scipy.optimize
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import MultiTaskModule

from benchmark.config import parse_config
from benchmark.harness.run import run
from strategies.agem import agem_project
from strategies.der import DERConfig, DERPlugin, finite
from strategies.gem import GEMConfig, GEMPlugin, project


def test_agem_projection_is_the_formula_on_conflict_and_identity_otherwise():
    g, g_ref = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 1.0])  # g·g_ref = −1.5 < 0
    out = agem_project(g, g_ref)
    assert torch.allclose(out, g - (-1.5 / 2.0) * g_ref) and float(out @ g_ref) >= -1e-6
    agree = torch.tensor([0.0, 1.0, 3.0])
    assert torch.equal(agem_project(agree, g_ref), agree)


def test_gem_projection_is_the_closest_gradient_that_conflicts_with_no_task():
    g = torch.tensor([1.0, -2.0, 0.5, 0.0])
    G = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, -1.0, 2.0]])  # both rows conflict with g
    assert (G @ g < 0).all()
    out = project(g, G, margin=0.0, eps=0.0)
    assert (G @ out >= -1e-6).all()
    gn, Gn = g.double().numpy(), G.double().numpy()
    best = scipy.optimize.minimize(lambda z: 0.5 * np.sum((z - gn) ** 2), gn, method="SLSQP",
                                   constraints=[{"type": "ineq", "fun": lambda z: Gn @ z}])
    assert np.allclose(out.numpy(), best.x, atol=1e-4)
    one = G[:1]  # one conflicting task: GEM's projection is A-GEM's
    assert torch.allclose(project(g, one, margin=0.0, eps=0.0), agem_project(g, one[0]), atol=1e-6)



def test_gem_memory_batch_draws_that_many_distinct_memory_samples_per_step_and_zero_means_all():
    memory = (torch.arange(10.0).view(10, 1), torch.arange(10) % 2, torch.zeros(10, dtype=torch.long))
    whole = GEMPlugin(GEMConfig(memory_batch=0)).draw(memory)
    assert all(a is b for a, b in zip(whole, memory, strict=True))
    torch.manual_seed(0)  # the plugin's generator starts from the run's seed
    plugin = GEMPlugin(GEMConfig(memory_batch=4))
    first, second = plugin.draw(memory), plugin.draw(memory)
    for x, y, t in (first, second):
        rows = x.view(-1).long()
        assert len(rows.unique()) == 4 and torch.equal(y, rows % 2) and torch.equal(t, torch.zeros(4).long())
    assert not torch.equal(first[0], second[0])  # drawn afresh at every step

class Routed(MultiTaskModule):
    """Two tasks, heads of width 2 and 3, padded with −inf: the routed rows DER stores."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 3)

    def forward(self, x, task_labels):
        t, out = task_labels, self.w(x)
        return torch.where((t[:, None] == 0) & (torch.arange(3)[None] == 2), float("-inf"), out)


def test_der_keeps_the_outputs_it_saw_and_adds_alpha_mse_plus_beta_ce():
    torch.manual_seed(0)
    model, plugin = Routed(), DERPlugin(DERConfig(alpha=0.3, beta=0.7, mem_size=8))
    x, y, t = torch.randn(4, 2), torch.tensor([0, 1, 2, 1]), torch.tensor([0, 0, 1, 1])
    out = model(x, t)
    strategy = types.SimpleNamespace(mb_x=x, mb_y=y, mb_task_id=t, mb_output=out, model=model,
                                     _criterion=torch.nn.CrossEntropyLoss(), loss=torch.zeros(()))
    plugin.after_training_iteration(strategy)
    assert plugin.size == 4 and torch.equal(plugin.memory[3][:4], finite(out.detach()))
    assert torch.isneginf(out[:2, 2]).all() and (plugin.memory[3][:2, 2] == 0).all()
    with torch.no_grad():
        model.w.weight += 0.5  # the network has moved on since it saw them
    state = plugin.generator.get_state()
    plugin.before_backward(strategy)
    plugin.generator.set_state(state)
    i1 = torch.randint(4, (4,), generator=plugin.generator)
    i2 = torch.randint(4, (4,), generator=plugin.generator)
    mem_x, mem_y, mem_t, mem_z = plugin.memory
    expected = 0.3 * torch.nn.functional.mse_loss(finite(model(mem_x[i1], mem_t[i1])), mem_z[i1]) + \
        0.7 * torch.nn.functional.cross_entropy(model(mem_x[i2], mem_t[i2]), mem_y[i2])
    assert float(strategy.loss) == pytest.approx(float(expected))


def test_der_memory_is_a_reservoir_over_everything_seen():
    plugin = DERPlugin(DERConfig(mem_size=5))
    for step in range(10):
        x = torch.full((3, 1), float(step))
        s = types.SimpleNamespace(mb_x=x, mb_y=torch.zeros(3, dtype=torch.long), mb_task_id=torch.zeros(3),
                                  mb_output=torch.zeros(3, 2))
        plugin.after_training_iteration(s)
    assert plugin.seen == 30 and plugin.size == 5 and plugin.memory[0].max() > 1  # later batches got in


class TrainingProbe(SupervisedPlugin):
    """Per experience: how many samples training read, by task label; and the weights it started from."""

    def __init__(self):
        super().__init__()
        self.counts, self.start = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.counts.append({})

    def before_training_epoch(self, strategy, **kwargs):  # after every plugin's before_training_exp
        if strategy.clock.train_exp_epochs == 0:
            self.start.append(copy.deepcopy(strategy.model.state_dict()))

    def after_training_iteration(self, strategy, **kwargs):
        if strategy.clock.train_exp_epochs == 0:
            for t in strategy.mb_task_id.tolist():
                self.counts[-1][t] = self.counts[-1].get(t, 0) + 1


def test_gdumb_trains_only_on_its_balanced_memory_from_the_initial_weights(tiny):
    probe = TrainingProbe()
    cfg, _ = parse_config(tiny("--strategy", "gdumb", "--gdumb.mem-size", "24"))
    run(cfg, extra_plugins=[probe])
    assert probe.counts[0] == {0: 24}  # the first task's samples only, as many as the memory holds
    assert probe.counts[1] == {0: 12, 1: 12} and probe.counts[2] == {0: 8, 1: 8, 2: 8}  # balanced over tasks
    for state in probe.start[1:]:
        assert all(torch.equal(state[k], probe.start[0][k]) for k in state)  # every experience from scratch


class EpochProbe(SupervisedPlugin):
    """The learning rate of every epoch and the steps it took, per experience."""

    def __init__(self):
        super().__init__()
        self.lrs, self.steps = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.lrs.append([])
        self.steps.append([])

    def after_training_iteration(self, strategy, **kwargs):
        if len(self.steps[-1]) == strategy.clock.train_exp_epochs:  # the epoch's first step: lr set by every plugin
            self.lrs[-1].append(strategy.optimizer.param_groups[0]["lr"])
            self.steps[-1].append(0)
        self.steps[-1][-1] += 1


def test_sgdr_factors_are_mammoths_fit_buffer_schedule():
    from strategies.gdumb import sgdr_factors

    # a 1/10 warm start, the maximum, then restarts at epochs 2, 4, 8 with a cosine down to 1/100 between them
    cos = [0.01 + 0.99 * (1 + math.cos(math.pi * k / n)) / 2 for n, k in ((2, 1), (4, 1), (4, 2), (4, 3))]
    assert sgdr_factors(8, 0.01) == pytest.approx([0.1, 1.0, 1.0, cos[0], 1.0, cos[1], cos[2], cos[3]])


@pytest.mark.parametrize("schedule", ["sgdr", "run"])
def test_gdumb_trains_its_memory_for_its_own_epochs_and_schedule(schedule, tiny):
    """GDumb's budget is its own (Mammoth's fitting_epochs, SGDR), not the stream's 3 epochs at a constant rate."""
    from strategies.gdumb import sgdr_factors

    probe = EpochProbe()
    cfg, _ = parse_config(tiny("--strategy", "gdumb", "--gdumb.mem-size", "24", "--gdumb.epochs", "6",
                               "--gdumb.schedule", schedule))
    run(cfg, extra_plugins=[probe])
    expected = [cfg.lr * f for f in sgdr_factors(6, 0.01)] if schedule == "sgdr" else [cfg.lr] * 6
    for lrs, steps in zip(probe.lrs, probe.steps, strict=True):
        assert lrs == pytest.approx(expected)  # the same schedule at every experience, from the run's lr
        assert steps == [2] * 6  # 24 memory samples, batch 16: 2 steps in each of 6 epochs (the stream has 3)
