"""Runs of different strategies at one seed are paired (benchmark/runtime/randomness.py): the same initial weights,
training data order and evaluation data, each strategy's own randomness on its own generator; past heads stay frozen
unless the method trains them; a composition of strategies means the same in either order."""

from __future__ import annotations

import hashlib

import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import derived_seed, own_generator, own_rng
from strategies.lwf import LwFPlugin
from tests.golden_files import continual_record


def run_bytes(make, *args) -> tuple[bytes, str]:
    """(matrix.csv, every held-out and training loss at full precision): a leak too small to flip a prediction
    still moves a loss."""
    cfg, _ = parse_config(make(*args))
    folder, _ = run(cfg)
    return (folder / "matrix.csv").read_bytes(), continual_record(folder)


@pytest.mark.parametrize("stream", ["binary_tasks", "dense_suite"])
@pytest.mark.parametrize("switched_off", [("ewc", "--ewc.ewc-lambda"), ("mas", "--mas.mas-lambda"), ("si", "--si.c"),
                                          ("lwf", "--lwf.alpha")])
def test_a_method_whose_weight_is_zero_reproduces_naive_byte_for_byte(switched_off, stream, tiny, tiny_dense,
                                                                      tmp_path):
    """Its importance pass, teacher and memory of anchors draw nothing from the global generator and leave the
    optimizer's view of every parameter as naive's: any leak of randomness or a zero gradient on a past head shows."""
    make = tiny if stream == "binary_tasks" else tiny_dense
    name, flag = switched_off
    naive = run_bytes(make, "--strategy", "naive", "--out-dir", str(tmp_path / "naive"))
    assert run_bytes(make, "--strategy", name, flag, "0", "--out-dir", str(tmp_path / name)) == naive


class RandomnessProbe(SupervisedPlugin):
    """After every training step: the global generator's state, and a hash of the rows of the batch that belong to
    the experience being trained (its own data, whatever memory a strategy mixed in)."""

    def __init__(self):
        super().__init__()
        self.global_states, self.own_rows = [], []

    def after_training_iteration(self, strategy, **kwargs):
        self.global_states.append(hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
        mine = strategy.mb_x[strategy.mb_task_id == strategy.experience.current_experience]
        self.own_rows.append(hashlib.sha256(mine.detach().cpu().numpy().tobytes()).hexdigest())


def probed(make, name: str, tmp_path, *extra) -> RandomnessProbe:
    probe = RandomnessProbe()
    cfg, _ = parse_config(make("--strategy", name, "--out-dir", str(tmp_path / name), *extra))
    run(cfg, extra_plugins=[probe])
    return probe


SAME_LOADER = ["ewc", "si", "mas", "lwf", "der", "gem", "agem", "progressive", "single_task"]


@pytest.mark.parametrize("mode", ["finetune", "frozen"])  # frozen: cached features and the fast batch path
def test_every_strategy_sees_naives_data_order_and_leaves_the_global_generator_as_naive_does(mode, tiny, tmp_path):
    naive = probed(tiny, "naive", tmp_path, "--backbone-mode", mode)
    assert len(set(naive.own_rows)) == len(naive.own_rows) > 3
    for name in [*SAME_LOADER, "replay"]:
        probe = probed(tiny, name, tmp_path, "--backbone-mode", mode)
        assert probe.own_rows == naive.own_rows, f"{name}: another order of the experience's own samples"
        # replay's batches hold more samples and progressive's later columns have dropout layers of their own:
        # their forward passes draw more dropout masks, by design. Every other one draws what naive draws.
        if name not in ("replay", "progressive"):
            assert probe.global_states == naive.global_states, f"{name} moved the global generator"


def test_a_strategys_own_generator_depends_on_the_run_seed_and_its_name():
    class Strategy:
        run_seed = 3

    a, b = Strategy(), Strategy()
    first = torch.randint(10**9, (4,), generator=own_generator(a, "der"))
    assert own_generator(a, "der") is own_generator(a, "der")  # one per name and strategy
    assert torch.equal(torch.randint(10**9, (4,), generator=own_generator(b, "der")), first)
    assert not torch.equal(torch.randint(10**9, (4,), generator=own_generator(b, "gem")),
                           torch.randint(10**9, (4,), generator=own_generator(Strategy(), "der")))
    assert derived_seed(3, "der") != derived_seed(4, "der") and 0 <= derived_seed(3, "der") < 2**63


def test_own_rng_draws_from_its_generator_and_restores_the_global_one():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with own_rng(g1):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with own_rng(g2):
        assert torch.equal(torch.rand(3), inside)  # the same generator state gives the same draws
    assert not torch.equal(torch.rand(3), inside)


class HeadSnapshots(SupervisedPlugin):
    """Every head's weights after every experience."""

    def __init__(self):
        super().__init__()
        self.after = []

    def after_training_exp(self, strategy, **kwargs):
        self.after.append([[p.detach().clone() for p in head.parameters()] for head in strategy.model.heads])


@pytest.mark.parametrize("stream,name", [("binary_tasks", n) for n in STRATEGIES.names()
                                         if not STRATEGIES.get(n).meta.one_shot] +
                         [("binary_tasks", "ewc+si"), ("binary_tasks", "lwf+replay")] +
                         [("dense_suite", n) for n in ("naive", "ewc", "si", "mas", "lwf")])
def test_a_past_head_stays_bit_identical_unless_the_method_trains_it(stream, name, tiny, tiny_dense):
    probe = HeadSnapshots()
    flags = STRATEGIES.get(name).meta.required_flags()
    cfg, _ = parse_config((tiny if stream == "binary_tasks" else tiny_dense)("--strategy", name, *flags))
    run(cfg, extra_plugins=[probe])
    moved = [(j, i) for i in range(1, 3) for j in range(i)
             if not all(torch.equal(a, b) for a, b in zip(probe.after[i][j], probe.after[j][j], strict=True))]
    if STRATEGIES.get(name).meta.trains_past_heads:
        assert moved, f"{name} declares it trains past heads, but none moved"
    else:
        assert not moved, f"{name} moved past heads (task, after experience): {moved}"


class DistillationProbe(SupervisedPlugin):
    """At every step with a teacher, LwF's term beside the one computed on the training batch itself."""

    def __init__(self):
        super().__init__()
        self.pairs = []

    def before_update(self, strategy, **kwargs):
        lwf = next(p for p in strategy.plugins if isinstance(p, LwFPlugin))
        if lwf.teacher is None or not lwf.old_tasks:
            return
        model, x = strategy.model, strategy.mb_x
        with torch.no_grad():
            feats, teacher = model.features(x), lwf.teacher.features(x)
            expected = sum(float(model.distill(t, model.head(t, feats), lwf.teacher.head(t, teacher),
                                               lwf.cfg.temperature)) for t in lwf.old_tasks)
        self.pairs.append((lwf.last_kd, expected))


@pytest.mark.parametrize("other", [n for n in STRATEGIES.composable() if n != "lwf"])
@pytest.mark.parametrize("lwf_first", [True, False])
def test_lwf_distils_the_training_batch_whatever_it_is_composed_with_and_in_either_order(other, lwf_first, tiny):
    name = f"lwf+{other}" if lwf_first else f"{other}+lwf"
    probe = DistillationProbe()
    cfg, _ = parse_config(tiny("--strategy", name, "--dropout", "0"))  # no dropout: features(x) is deterministic
    run(cfg, extra_plugins=[probe])
    assert len(probe.pairs) > 5
    for got, expected in probe.pairs:
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)
