"""Scenarios (benchmark/harness/scenarios.py): class-IL's one head, its two R matrices from one run, and what each
strategy declares."""

import copy
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from benchmark.cli import main
from benchmark.config import RunConfig, parse_config
from benchmark.errors import UserError
from benchmark.harness.run import run
from benchmark.harness.scenarios import ClassILAccuracy, apply_scenario, class_ranges, model_tasks
from benchmark.models.hatswap_net import build_net
from benchmark.registry import STRATEGIES, STREAMS
from benchmark.streams.split_classes import SplitClassesConfig
from benchmark.tasks import TaskSpec
from benchmark.tasks.distill import kd_loss
from strategies.lwf import LwFConfig, LwFPlugin
from strategies.replay import ReplayConfig, make_replay_plugin
from tests.conftest import tiny_args

SPLIT = ("--stream", "split_classes", "--split_classes.train-per-task", "24", "--split_classes.test-per-task", "12",
         "--epochs", "1")


def test_each_experience_gets_the_next_classes_of_the_one_head():
    assert class_ranges([2, 2, 3]) == [[0, 1], [2, 3], [4, 5, 6]]
    tasks = [TaskSpec("a", "binary"), TaskSpec("b", "multiclass", params={"num_classes": 3})]
    (head,) = model_tasks("class-il", tasks, "s")
    assert head.kind == "multiclass" and head.n_outputs == 5
    assert model_tasks("task-il", tasks, "s") == tasks


def test_class_il_needs_class_label_tasks():
    dense = [TaskSpec("seg", "segmentation", params={"num_classes": 3, "image_size": 8})]
    with pytest.raises(UserError, match=r"stream dense_suite has segmentation: use --scenario task-il"):
        model_tasks("class-il", dense, "dense_suite")


def test_the_class_il_stream_relabels_the_same_samples(fmnist_root):
    cfg = SplitClassesConfig(tasks=5, train_per_task=20, test_per_task=10)
    task_il = STREAMS.get("split_classes").build(cfg, seed=0, data_root=fmnist_root, download=False, apt_install=False)
    class_il = apply_scenario("class-il", task_il, "split_classes")
    assert class_il.class_ranges == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [t.name for t in class_il.column_specs] == [t.name for t in task_il.tasks]
    for t, (old, new) in enumerate(zip(task_il.scenario.test_stream, class_il.scenario.test_stream, strict=True)):
        assert new.task_labels == [0] and old.task_labels == [t]
        x_old, y_old, _ = old.dataset[3]
        x_new, y_new, task = new.dataset[3]
        assert torch.equal(x_old, x_new) and int(y_new) == int(y_old) + 2 * t and task == 0
    first = task_il.sets["train"][1][0].tensors[0]
    assert class_il.sets["train"][1][0].tensors[0].data_ptr() == first.data_ptr()  # not a copy


def test_class_il_accuracy_by_hand():
    # 3 samples of experience 1 (classes 2, 3) after experiences 0 and 1 (seen: 0–3); class 4 is never seen yet
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0, 9.0],   # seen argmax: 1 (wrong); own {2, 3}: 3 (right)
                           [0.0, 0.0, 3.0, 1.0, 9.0],   # seen: 2 (right); own: 2 (right)
                           [4.0, 0.0, 1.0, 2.0, 0.0]])  # seen: 0 (wrong); own: 3 (wrong: label 2)
    m = ClassILAccuracy(own=[2, 3], seen=[0, 1, 2, 3])
    m.update(logits, torch.tensor([3, 2, 2]))
    assert m.compute() == pytest.approx({"accuracy": 1 / 3, "task_il_accuracy": 2 / 3})


class CaptureEval(SupervisedPlugin):
    """Every evaluation's logits and labels, per experience (what a re-evaluation from saved predictions reads)."""

    def __init__(self):
        super().__init__()
        self.rows, self._row = [], None

    def before_eval(self, strategy, **kwargs):
        self._row = {}
        self.rows.append(self._row)

    def after_eval_iteration(self, strategy, **kwargs):
        out = self._row.setdefault(strategy.experience.current_experience, ([], []))
        out[0].append(strategy.mb_output.detach().clone())
        out[1].append(strategy.mb_y.clone())


def test_a_class_il_runs_task_il_matrix_is_its_logits_masked(tmp_path, fmnist_root):
    capture = CaptureEval()
    cfg, _ = parse_config(tiny_args(tmp_path, fmnist_root, *SPLIT, "--scenario", "class-il", "--strategy", "replay"))
    folder, _ = run(cfg, extra_plugins=[capture])
    assert folder.parent.parent.name == "split_classes-class-il"
    class_il = pd.read_csv(folder / "matrix.csv", index_col=0).to_numpy()
    task_il = pd.read_csv(folder / "matrix_task_il.csv", index_col=0).to_numpy()
    ranges = [[2 * t, 2 * t + 1] for t in range(5)]
    for i, row in enumerate(capture.rows):  # init, then after experience 0 … 4
        seen = list(range(10)) if i == 0 else list(range(2 * i))
        for j, (outs, ys) in row.items():
            logits, y = torch.cat(outs), torch.cat(ys)
            masked = logits[:, ranges[j]].argmax(1) + ranges[j][0]
            assert task_il[i, j] == pytest.approx(float((masked == y).double().mean()), abs=5e-7)
            among_seen = torch.tensor(seen)[logits[:, seen].argmax(1)]
            assert class_il[i, j] == pytest.approx(float((among_seen == y).double().mean()), abs=5e-7)
    assert (class_il[1:, 1:][np.triu_indices(4)] == 0).all()  # a class never seen is never predicted
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["scenario"] == "class-il" and summary["task_il"]["acc"] == pytest.approx(task_il[-1].mean())


@pytest.mark.parametrize("strategy", ["progressive", "single_task"])
def test_a_strategy_outside_its_scenarios_is_one_error_line(tmp_path, fmnist_root, strategy, capsys):
    assert main(["run", *tiny_args(tmp_path, fmnist_root, *SPLIT, "--scenario", "class-il",
                                   "--strategy", strategy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hatswap: error: --strategy {strategy} runs in --scenario task-il only, not class-il (it needs "
                   f"the task label at test time, or a model per task)"]
    assert STRATEGIES.get("lwf+replay").meta.scenarios == ("task-il", "class-il", "domain-il")  # every part's


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES.names() if "class-il" in STRATEGIES.get(s).meta.scenarios])
def test_every_strategy_that_declares_class_il_runs_in_it(tmp_path, fmnist_root, strategy):
    assert main(["run", *tiny_args(tmp_path, fmnist_root, *SPLIT, "--scenario", "class-il",
                                   "--strategy", strategy, *STRATEGIES.get(strategy).meta.required_flags())]) == 0
    folder = tmp_path / "runs" / "split_classes-class-il" / strategy / "seed0"
    for name in ("matrix.csv", "matrix_task_il.csv"):
        scores = pd.read_csv(folder / name, index_col=0).to_numpy()
        assert scores.shape[1] == 5 and ((scores >= 0) & (scores <= 1)).all()


def test_lwf_in_class_il_distils_the_past_classes_logits_only():
    torch.manual_seed(0)
    model = build_net(nn.Identity(), [TaskSpec("all", "multiclass", params={"num_classes": 6})], feat_dim=4,
                      hidden=(8,))
    teacher = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
    plugin = LwFPlugin(LwFConfig(alpha=1.0, temperature=2.0))
    plugin.teacher, plugin.old_tasks, plugin.old_classes = teacher, [0], [0, 1, 2, 3]
    x = torch.randn(5, 4)
    plugin._feats = model.features(x)
    strategy = SimpleNamespace(scenario="class-il", mb_x=x, model=model, loss=torch.zeros(()))
    plugin.before_backward(strategy)
    with torch.no_grad():
        expected = kd_loss(model(x, 0)[:, :4], teacher(x, 0)[:, :4], 2.0)
        every_logit = kd_loss(model(x, 0), teacher(x, 0), 2.0)
    assert float(strategy.loss) == pytest.approx(float(expected), rel=1e-6)
    assert abs(float(expected) - float(every_logit)) > 1e-4  # the new classes' logits would change it


def test_replay_in_class_il_balances_its_memory_over_experiences(fmnist_root):
    cfg = SplitClassesConfig(tasks=5, train_per_task=40, test_per_task=10)
    bench = apply_scenario("class-il", STREAMS.get("split_classes").build(
        cfg, seed=0, data_root=fmnist_root, download=False, apt_install=False), "split_classes")
    plugin = make_replay_plugin(ReplayConfig(mem_size=30), train_mb_size=8)
    strategy = SimpleNamespace(scenario="class-il", clock=SimpleNamespace(train_exp_counter=0), run_seed=0)
    for i, exp in enumerate(list(bench.scenario.train_stream)[:3]):
        strategy.experience, strategy.clock.train_exp_counter = exp, i
        plugin.after_training_exp(strategy)
    sizes = {g: len(b.buffer) for g, b in plugin.storage_policy.buffer_groups.items()}
    assert sorted(sizes.values()) == [10, 10, 10]  # by task label (all 0) it would be one group of 30
    classes = {g: sorted({int(y) for y in b.buffer.targets}) for g, b in plugin.storage_policy.buffer_groups.items()}
    assert sorted(map(tuple, classes.values())) == [(0, 1), (2, 3), (4, 5)]


def test_the_scenario_is_a_config_field_with_choices():
    assert RunConfig().scenario == "task-il"
    with pytest.raises(UserError, match=r"--scenario: invalid choice: 'open-world' \(choose from 'task-il', "):
        parse_config(["--scenario", "open-world"])


def test_the_report_shows_both_scenarios_of_class_il_runs(tmp_path, fmnist_root):
    for strategy in ("naive", "replay"):
        assert main(["run", *tiny_args(tmp_path, fmnist_root, *SPLIT, "--scenario", "class-il",
                                       "--strategy", strategy)]) == 0
    assert main(["report", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "summary.csv").set_index(["stream", "strategy"])
    for strategy in ("naive", "replay"):
        summary = json.loads((tmp_path / "runs" / "split_classes-class-il" / strategy / "seed0" /
                              "summary.json").read_text())
        assert table.loc[("split_classes-class-il", strategy), "acc_mean"] == pytest.approx(summary["acc"], abs=1e-6)
        assert table.loc[("split_classes-class-il.task-il", strategy), "acc_mean"] == pytest.approx(
            summary["task_il"]["acc"], abs=1e-6)
        for stream in ("split_classes-class-il", "split_classes-class-il.task-il"):
            assert (tmp_path / "figures" / f"{stream}_{strategy}_R.png").is_file()
    assert "## split_classes-class-il.task-il" in (tmp_path / "REPORT.md").read_text()


def test_the_zoo_split_profile_holds_every_class_il_strategy():
    from benchmark.config import load_profile
    from benchmark.grid.batch import plan

    profile = load_profile("zoo-split")
    mode = profile["config"]["backbone_mode"]  # the training-free strategies need a frozen backbone
    class_il = {s for s in STRATEGIES.names() if "class-il" in STRATEGIES.get(s).meta.scenarios
                and mode in STRATEGIES.get(s).meta.backbone_modes}
    assert class_il <= set(profile["strategies"]) and "lwf+replay" in profile["strategies"]
    assert profile["config"]["scenario"] == "class-il" and len(plan(profile)) == len(profile["strategies"]) * 3
    cfg, _ = parse_config(["--profile", "zoo-split", "--stream", "split_classes", "--strategy", "lwf+replay"])
    assert cfg.scenario == "class-il" and cfg.stream_args.tasks == 5


def test_a_stream_without_its_datasets_is_told_how_to_build_one(fmnist_root):
    cfg = SplitClassesConfig(tasks=5, train_per_task=20, test_per_task=10)
    bench = STREAMS.get("split_classes").build(cfg, seed=0, data_root=fmnist_root, download=False, apt_install=False)
    bench.sets = None  # as a stream that calls Benchmark(task_stream(...), ...) returns it
    with pytest.raises(UserError, match=r"build it with Benchmark.of\(train_sets, test_sets, tasks, frames"):
        apply_scenario("class-il", bench, "hard_pairs")
