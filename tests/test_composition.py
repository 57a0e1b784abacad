"""`--strategy a+b`: the template with every part's plugins, each part configured by its own flags."""

from __future__ import annotations

import json

import pytest
from avalanche.core import SupervisedPlugin

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.results import read_matrix
from benchmark.run import run
from strategies.lwf import LwFPlugin
from strategies.replay import TaskBalancedReplay


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
    from benchmark.batch import args_for_run

    todo = [("binary_tasks", "naive", 0), ("binary_tasks", "lwf+replay", 0)]
    flags = ["--lwf.alpha", "3", "--epochs", "1"]
    assert args_for_run(flags, "binary_tasks", "lwf+replay", todo) == flags
    assert args_for_run(flags, "binary_tasks", "naive", todo) == ["--epochs", "1"]
