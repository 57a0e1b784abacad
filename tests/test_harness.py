import json

import pytest
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import bwt_metrics
from avalanche.training.plugins import EvaluationPlugin

from benchmark.config import parse_config
from benchmark.errors import RunFailed, UserError
from benchmark.harness.run import run
from benchmark.outputs.results import read_matrix


def test_same_seed_twice_gives_identical_matrix(tiny, tmp_path):
    a, _ = run(parse_config(tiny("--strategy", "replay", "--out-dir", str(tmp_path / "a")))[0])
    b, _ = run(parse_config(tiny("--strategy", "replay", "--out-dir", str(tmp_path / "b")))[0])
    assert (a / "matrix.csv").read_bytes() == (b / "matrix.csv").read_bytes()
    c, _ = run(parse_config(tiny("--strategy", "replay", "--seed", "1", "--out-dir", str(tmp_path / "c")))[0])
    assert (a / "matrix.csv").read_bytes() != (c / "matrix.csv").read_bytes()


def test_avalanche_stream_bwt_agrees_with_ours(tiny):
    evaluator = EvaluationPlugin(bwt_metrics(experience=True, stream=True), loggers=[])
    folder, _ = run(parse_config(tiny("--strategy", "naive", "--seed", "2"))[0], evaluator=evaluator)  # BWT ≠ 0
    ours = json.loads((folder / "summary.json").read_text())["bwt"]
    history = evaluator.get_all_metrics()["StreamBWT/eval_phase/test_stream"][1]
    assert history[-1] == pytest.approx(ours, abs=1e-6)
    assert ours != 0  # a real comparison, not 0 == 0


def test_run_folder_records_what_reproduces_it(tiny):
    folder, _ = run(parse_config(tiny("--strategy", "lwf"))[0])
    rec = json.loads((folder / "config.json").read_text())
    assert rec["config"]["strategy"] == "lwf" and rec["config"]["lwf.temperature"] == 2.0 and rec["seed"] == 0
    assert rec["versions"]["torch"] and rec["versions"]["avalanche-lib"] and "commit" in rec["git"]
    assert rec["backbone"]["weights"] == "random init (torch seed 0)" and rec["backbone"]["params"] > 0
    assert rec["data"]["train"]["loader"] == "torchvision.datasets.FashionMNIST"
    assert len(rec["data"]["train"]["sha256"]) == 64
    tasks, labels, _ = read_matrix(folder / "matrix.csv")
    assert tasks[0] == "t0_trouser_vs_coat_sneaker" and labels[0] == "init"
    summary = json.loads((folder / "summary.json").read_text())
    assert {"acc", "bwt", "forgetting", "fwt", "exp_wall_s", "backbone_weights", "data_source"} <= set(summary)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_rerun_skips_same_config_and_refuses_a_different_one(tiny):
    folder, status = run(parse_config(tiny())[0])
    before = (folder / "summary.json").read_bytes()
    assert run(parse_config(tiny())[0]) == (folder, "skipped")
    with pytest.raises(UserError, match="different config.*--force"):
        run(parse_config(tiny("--lr", "0.01"))[0])
    assert (folder / "summary.json").read_bytes() == before
    folder2, status = run(parse_config(tiny("--lr", "0.01"))[0], force=True)
    assert status == "done" and folder2 == folder
    assert json.loads((folder / "config.json").read_text())["config"]["lr"] == 0.01


class LateNaNTerm(SupervisedPlugin):
    """A plugin that, like LwF, adds its term in before_backward, after the harness's own plugins ran."""

    def before_backward(self, strategy, **kwargs):
        if strategy.experience.current_experience == 1:
            strategy.loss = strategy.loss + float("nan")


def test_a_non_finite_term_added_by_a_later_plugin_stops_the_run(tiny):
    cfg, _ = parse_config(tiny("--strategy", "naive"))
    with pytest.raises(RunFailed, match="non-finite training loss .* experience 1"):
        run(cfg, extra_plugins=[LateNaNTerm()])
    assert not (cfg.out_dir / "runs" / "binary_tasks" / "naive" / "seed0" / "summary.json").exists()


def test_an_experiences_time_includes_the_strategys_own_end_of_experience_work():
    """The harness's TrainLog ends its after_training_exp before a strategy's plugin runs its own (slca aligns its
    classifier there): the experience's time is taken when the train() call ends, so that work is counted."""
    import time

    from benchmark.harness.harness_plugins import TrainLog

    seen = []
    log = TrainLog(on_exp_end=lambda i, s: seen.append((i, s)))
    log.before_training_exp(None)
    log.after_training_exp(None)
    time.sleep(0.05)  # a strategy plugin's after_training_exp, called after the harness's
    log.after_training(None)
    assert len(log.exp_wall_s) == 1 and log.exp_wall_s[0] >= 0.05 and seen == [(0, log.exp_wall_s[0])]
