"""`--strategy a+b`: the template with every part's plugins, each part configured by its own flags."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.plugins.clock import Clock
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.templates.base_sgd import PeriodicEval

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.outputs.results import read_matrix
from benchmark.registry import STRATEGIES, CompositeArgs, StrategyRegistry
from strategies.agem import AGEMPlugin
from strategies.der import DERPlugin
from strategies.ewc import EWCPlugin
from strategies.gem import GEMPlugin
from strategies.lwf import LwFConfig, LwFPlugin
from strategies.mas import MASPlugin
from strategies.replay import TaskBalancedReplay
from strategies.si import SIPlugin


class PluginTypes(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.types = []

    def before_training(self, strategy, **kwargs):
        self.types = [type(p) for p in strategy.plugins]


def test_lwf_plus_replay_runs_both_plugins_with_their_own_flags(tiny):
    probe = PluginTypes()
    cfg, _ = parse_config(tiny("--strategy", "lwf+replay", "--lwf.alpha", "2", "--replay.mem-size", "12"))
    folder, status = run(cfg, extra_plugins=[probe])
    assert status == "done" and LwFPlugin in probe.types and TaskBalancedReplay in probe.types
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["strategy"] == "lwf+replay" and config["lwf.alpha"] == 2.0 and config["replay.mem_size"] == 12
    losses = {}  # held-out losses: the tiny test sets' accuracies move in steps of a third
    for name in ("lwf", "replay"):
        single, _ = parse_config(tiny("--strategy", name, *(["--lwf.alpha", "2"] if name == "lwf" else
                                                               ["--replay.mem-size", "12"])))
        losses[name] = json.loads((run(single)[0] / "summary.json").read_text())["eval_loss"]
    combined = json.loads((folder / "summary.json").read_text())["eval_loss"]
    assert len(read_matrix(folder / "matrix.csv")[1]) == 4
    assert combined != losses["lwf"] and combined != losses["replay"]  # both parts act


@pytest.mark.parametrize("name,fragment", [("lwf+joint", "joint cannot be combined"),
                                           ("replay+progressive", "progressive cannot be combined"),
                                           ("lwf+lwf", "two or more different strategies")])
def test_an_incompatible_combination_is_one_error_line(name, fragment, tiny, capsys):
    assert main(["run", *tiny("--strategy", name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_a_batch_flag_of_a_part_reaches_the_combination():
    from benchmark.grid.batch import args_for_run

    todo = [("binary_tasks", "naive", 0), ("binary_tasks", "lwf+replay", 0)]
    flags = ["--lwf.alpha", "3", "--epochs", "1"]
    assert args_for_run(flags, "binary_tasks", "lwf+replay", todo) == flags
    assert args_for_run(flags, "binary_tasks", "naive", todo) == ["--epochs", "1"]


# What each hand-written builder gave before the builders were generated (`SupervisedTemplate(plugins=[*plugins,
# XPlugin(cfg)], **template_kwargs)`): its own plugins, in order, after the harness's.
HAND_WRITTEN = {"naive": [], "ewc": [EWCPlugin], "lwf": [LwFPlugin], "si": [SIPlugin], "mas": [MASPlugin],
                "replay": [TaskBalancedReplay], "der": [DERPlugin], "agem": [AGEMPlugin], "gem": [GEMPlugin]}
TEMPLATE_OWN = [EvaluationPlugin, PeriodicEval, Clock]  # what SupervisedTemplate appends to any plugin list


def template_kwargs(batch: int = 8) -> dict:
    model = torch.nn.Linear(4, 2)
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                criterion=torch.nn.CrossEntropyLoss(), train_mb_size=batch, train_epochs=1, eval_mb_size=batch,
                device="cpu", evaluator=EvaluationPlugin(loggers=[]), eval_every=-1)


def default_cfg(entry):
    return entry.config_cls() if entry.config_cls else None


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_a_generated_builder_gives_the_plugins_its_hand_written_one_did(name):
    entry, harness = STRATEGIES.get(name), [PluginTypes()]
    assert entry.meta.plugins is not None and entry.build.__module__ == f"strategies.{name}"
    cfg = default_cfg(entry)
    strategy = entry.build(cfg, plugins=harness, **template_kwargs(batch=12))
    assert isinstance(strategy, SupervisedTemplate) and harness == [strategy.plugins[0]]  # the caller's list as it was
    assert [type(p) for p in strategy.plugins] == [PluginTypes, *HAND_WRITTEN[name], *TEMPLATE_OWN]
    for plugin in strategy.plugins[1:1 + len(HAND_WRITTEN[name])]:
        if isinstance(plugin, TaskBalancedReplay):  # replay's own memory, batch = the run's, replayed batch its own
            assert (plugin.mem_size, plugin.batch_size, plugin.batch_size_mem) == (cfg.mem_size, 12, 12)
        else:
            assert plugin.cfg is cfg


@pytest.mark.parametrize("a,b", list(itertools.combinations(STRATEGIES.composable(), 2)))
def test_every_plugin_strategy_combines_with_every_other_in_either_order(a, b):
    for first, second in ((a, b), (b, a)):
        entry = STRATEGIES.get(f"{first}+{second}")
        cfgs = tuple((p.name, default_cfg(p)) for p in entry.parts)
        kwargs = template_kwargs()
        own = [HAND_WRITTEN.get(name) or [type(p) for p in STRATEGIES.get(name).meta.plugins(cfg, kwargs)]
               for name, cfg in cfgs]  # a strategy added since: the plugins it declares
        strategy = entry.build(CompositeArgs(cfgs), plugins=[PluginTypes()], **kwargs)
        assert [type(p) for p in strategy.plugins] == [PluginTypes, *own[0], *own[1], *TEMPLATE_OWN]


def test_a_plugin_strategy_registers_its_plugins_once_and_its_builder_is_generated(monkeypatch):
    with pytest.raises(TypeError, match=r"register_plugins\('mine'"):
        StrategyRegistry().register("mine", plugins=lambda cfg, template_kwargs: [])
    registry = STRATEGIES
    monkeypatch.setattr(registry, "_entries", {n: registry.get(n) for n in registry.names()})  # gone after the test

    @registry.register_plugins("mine", trains_past_heads=True)
    def mine_plugins(cfg, template_kwargs: dict) -> list:
        return [PluginTypes()]

    entry = registry.get("mine")
    assert entry.meta.plugins is mine_plugins and entry.meta.trains_past_heads and entry.build.__module__ == __name__
    assert "mine" in registry.composable()
    combined = registry.get("mine+lwf")
    strategy = combined.build(CompositeArgs((("mine", None), ("lwf", LwFConfig()))), **template_kwargs())
    assert [type(p) for p in strategy.plugins] == [PluginTypes, LwFPlugin, *TEMPLATE_OWN]
    assert combined.meta.trains_past_heads and combined.meta.plugins is not None
