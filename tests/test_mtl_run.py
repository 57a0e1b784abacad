"""The mtl_tasks task set, `hatswap mtl`, and MTL batches (resume, failures) on the fixture files."""

import csv
import json

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.mtl.batch import run_mtl_batch
from benchmark.mtl.config import parse_mtl_config
from benchmark.mtl.registries import TASK_SETS
from benchmark.mtl.report import write_mtl_report
from benchmark.mtl.run import build_model
from benchmark.mtl.task_sets.mtl_tasks import MtlTasksConfig
from benchmark.outputs.results import SUMMARY_KEYS, read_matrix

TINY = ["--mtl_tasks.train-size", "60", "--mtl_tasks.val-size", "20", "--mtl_tasks.test-size", "40",
        "--small_cnn.channels", "4", "--shared-width", "8", "--task-layers", "8", "--epochs", "2",
        "--batch-size", "16", "--no-download", "--no-apt-install", "--device", "cpu"]


def _data(root, seed=0, **kw):
    return TASK_SETS.get("mtl_tasks").build(MtlTasksConfig(**({"train_size": 60, "val_size": 20, "test_size": 40}
                                                                | kw)), seed=seed, data_root=root,
                                            download=False, apt_install=False)


def test_mtl_tasks_labels_follow_their_definitions(fmnist_root):
    from benchmark.mtl.task_sets.mtl_tasks import TASK_NAMES

    data = _data(fmnist_root)
    assert [t.name for t in data.tasks] == ["classes", "coarse", "reconstruction", "random"] == list(TASK_NAMES)
    assert {k: len(v) for k, v in data.x.items()} == {"train": 60, "val": 20, "test": 40}
    for split in ("train", "val", "test"):
        y = data.y[split]
        assert (y["coarse"].numpy() == np.isin(y["classes"].numpy(), (5, 7, 9))).all()  # footwear
        assert y["reconstruction"] is data.x[split]
    recon = data.tasks[2]
    assert recon.kind == "reconstruction" and recon.n_outputs == 28 * 28 and recon.params.mse_of_mean_image > 0
    assert [t.n_outputs for t in data.tasks] == [10, 2, 784, 2]


def test_random_task_labels_belong_to_the_images_not_the_run(fmnist_root):
    a, b = _data(fmnist_root, seed=0), _data(fmnist_root, seed=1)
    # different seeds sample different images, but an image seen by both runs has the same random label
    xa, xb = a.x["test"].flatten(1), b.x["test"].flatten(1)
    same = [(i, j) for i in range(len(xa)) for j in range(len(xb)) if bool((xa[i] == xb[j]).all())]
    assert same
    assert all(int(a.y["test"]["random"][i]) == int(b.y["test"]["random"][j]) for i, j in same)


def test_cli_mtl_writes_a_run_and_skips_a_rerun(tmp_path, fmnist_root, capsys):
    args = ["mtl", "--architecture", "mmoe", "--tasks", "3", "--experts", "2", "--shared-layers", "2",
            "--grad-clip", "1", "--task-lr", "coarse=0.01,random=0.1", "--data-root", str(fmnist_root),
            "--out-dir", str(tmp_path), *TINY]
    assert main(args) == 0
    folder = tmp_path / "mtl" / "runs" / "mmoe-equal-joint" / "seed0"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["tasks"] == ["classes", "coarse", "reconstruction"] and summary["architecture"] == "mmoe"
    tasks, labels, R = read_matrix(folder / "matrix.csv")
    assert labels == ["init", "after_joint"]
    assert R[-1][0] == pytest.approx(summary["final_metrics"]["classes"]["accuracy"])
    assert set(SUMMARY_KEYS) <= set(summary) and "cl" not in summary  # one schema with `hatswap run`'s summaries
    assert summary["final"] == pytest.approx(R[-1], abs=1e-6) and summary["acc"] == pytest.approx(np.mean(R[-1]))
    assert summary["bwt"] is None and summary["just_trained"] is None  # joint: no sequence
    assert len(summary["epochs"]) == 2 and (folder / "losses.png").is_file()
    record = json.loads((folder / "config.json").read_text())
    assert record["config"]["experts"] == 2 and record["versions"]["torch"] and record["seed"] == 0
    assert (record["config"]["grad_clip"], record["config"]["task_lr"]) == (1.0, "coarse=0.01,random=0.1")
    for key in ("activation", "mmoe.gate_layers"):  # a folder written before these knobs existed had their defaults
        del record["config"][key]
    (folder / "config.json").write_text(json.dumps(record))
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().err
    cfg, _ = parse_mtl_config(args[1:])  # the report's parameter count is the model's own, rebuilt here
    data = _data(fmnist_root)
    n_params = sum(p.numel() for p in build_model(cfg, data.select("3"), data.x["train"].shape[1:],
                                                   [t.name for t in data.tasks]).parameters())
    assert summary["params"] == n_params
    write_mtl_report(tmp_path)
    with open(tmp_path / "mtl" / "summary.csv", newline="") as f:
        assert [float(r["params"]) for r in csv.DictReader(f) if r["experiment"] == "mmoe-equal-joint"] == [n_params]
    assert f"| {n_params:,} |" in (tmp_path / "mtl" / "summary.md").read_text()


def test_cli_mtl_bad_input_is_one_line(tmp_path, capsys):
    assert main(["mtl", "--architecture", "mmo", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "known:" in err and "shared-bottom" in err
    assert main(["mtl", "--static.weight", "1", "--weighting", "static"]) == 2


def test_sequential_schedule_gives_R_and_cl_metrics(tmp_path, fmnist_root):
    args = ["mtl", "--architecture", "progressive", "--schedule", "sequential", "--tasks", "classes,coarse",
            "--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *TINY]
    assert main(args) == 0
    folder = tmp_path / "mtl" / "runs" / "progressive-equal-sequential" / "seed0"
    summary = json.loads((folder / "summary.json").read_text())
    _, labels, R = read_matrix(folder / "matrix.csv")
    assert labels == ["init", "after_exp0", "after_exp1"]
    assert R[1][0] == R[2][0] and summary["forgetting"] == 0.0  # progressive: old column frozen
    assert summary["just_trained"] == pytest.approx([R[0][0], R[1][1]], abs=1e-6) and summary["bwt"] == 0.0


def test_mtl_batch_resumes_lists_failures_and_reports_delta_m(tmp_path, fmnist_root, capsys):
    profile = {"kind": "mtl", "seeds": [0], "config": {"epochs": 2}, "experiments": [
        {"name": "stl-classes", "tasks": "classes"}, {"name": "stl-coarse", "tasks": "coarse"},
        {"name": "both", "tasks": "classes,coarse", "group": "g"},
        {"name": "broken", "tasks": "classes,coarse", "schedule": "curriculum", "curriculum.starts": [0, 5]}]}
    run_args = ["--data-root", str(fmnist_root), "--out-dir", str(tmp_path), *TINY]
    assert run_mtl_batch("t", profile, run_args) == 1  # 'broken' fails at run time; the others complete
    err = capsys.readouterr().err
    assert "broken/seed0" in err and "only 2 epochs" in (tmp_path / "mtl" / "failed_runs.txt").read_text()
    md = (tmp_path / "mtl" / "summary.md").read_text()
    assert "Δm = (1/T)" in md and "| both |" in md
    assert "| reference: 1-NN on raw pixels |" in md and "| reference: majority class / mean training image |" in md
    assert md.index("| stl-coarse |") < md.index("| reference: 1-NN") < md.index("| both |")  # beside the baselines
    table = (tmp_path / "mtl" / "summary.csv").read_text()
    (tmp_path / "mtl" / "summary.md").unlink()
    assert main(["report", str(tmp_path)]) == 0  # rebuilds the multi-task report as the batch wrote it (groups too)
    assert (tmp_path / "mtl" / "summary.md").read_text() == md
    assert (tmp_path / "mtl" / "summary.csv").read_text() == table
    assert not (tmp_path / "REPORT.md").exists()  # no continual runs here: no continual report
    with open(tmp_path / "mtl" / "summary.csv", newline="") as f:
        both = next(r for r in csv.DictReader(f) if r["experiment"] == "both")
    s = {n: dict(zip(*(json.loads((tmp_path / "mtl" / "runs" / n / "seed0" / "summary.json").read_text())[k]
                       for k in ("tasks", "final")), strict=True)) for n in ("stl-classes", "stl-coarse", "both")}
    gains = [(s["both"][t] - s[f"stl-{t}"][t]) / s[f"stl-{t}"][t] for t in ("classes", "coarse")]
    assert float(both["delta_m"]) == pytest.approx(sum(gains) / 2, rel=1e-6)
    assert both["baselines"] == "stl-*" and both["val_classes"]  # the listed stl runs share both's trunk
    mtime = (tmp_path / "mtl" / "runs" / "both" / "seed0" / "summary.json").stat().st_mtime_ns
    profile["experiments"].pop()
    assert run_mtl_batch("t", profile, run_args) == 0
    assert "skipped" in capsys.readouterr().err
    assert (tmp_path / "mtl" / "runs" / "both" / "seed0" / "summary.json").stat().st_mtime_ns == mtime
    assert not (tmp_path / "mtl" / "failed_runs.txt").exists()


def test_the_mtl_profile_parses_and_covers_the_grid():
    from benchmark.config import load_profile
    from benchmark.mtl import ARCHITECTURES, WEIGHTINGS
    from benchmark.mtl.batch import BASELINE_GROUP, plan, task_names
    from benchmark.mtl.transfer import trunk_key

    runs = plan(load_profile("mtl"), [])
    configs = [cfg for _, cfg in runs]
    names = {c.run_name for c in configs}
    assert len({(c.run_name, c.seed) for c in configs}) == len(configs), "one folder per run"
    assert {f"stl-{t}-shared-bottom" for t in ("classes", "coarse", "reconstruction")} <= names
    assert {"stl-classes-shared-bottom-2x64-drop0.2last", "stl-random-shared-bottom-drop0.2each",
            "stl-reconstruction-mtan"} <= names  # exp4's trunk, exp5's random task, an architecture's own
    assert {f"exp{k}" for k in range(1, 6)} <= names
    grid = {(c.architecture, c.weighting) for c in configs if c.tasks == "3" and c.schedule == "joint"}
    crossed = ("shared-bottom", "cross-stitch", "mmoe", "mtan", "progressive")  # × every weighting, seed 0
    assert grid >= {(a, w) for a in crossed for w in WEIGHTINGS.names()}
    on_four = {(c.architecture, c.seed) for c in configs if c.tasks == "4" and c.run_name.endswith("-4tasks")}
    assert on_four == {(a, s) for a in ARCHITECTURES.names() if a not in crossed for s in (0, 1, 2)}
    assert {c.schedule for c in configs} == {"joint", "alternating", "curriculum", "sequential"}
    exp5 = next(c for c in configs if c.run_name == "exp5")
    assert exp5.tasks == "4" and exp5.weighting_args.weights == "0.5,0.1,1,0.1" and exp5.dropout_at == "each"
    stl = {(trunk_key(c.to_dict()), c.tasks, c.seed) for g, c in runs if g == BASELINE_GROUP}
    for c in configs:  # every multi-task run has its own trunk's baseline for every task and seed, no spare one
        if len(task_names(c)) > 1:
            assert all((trunk_key(c.to_dict()), t, c.seed) in stl for t in task_names(c)), c.run_name
    assert len(stl) == sum(1 for g, _ in runs if g == BASELINE_GROUP)


def test_mtl_tasks_on_cifar10_groups_animals(tmp_path, monkeypatch):
    from tests.test_data import cifar_tarball_root

    root = cifar_tarball_root(tmp_path, monkeypatch)
    data = _data(root, source="cifar10", train_size=40, val_size=10, test_size=20)
    y = data.y["train"]
    assert (y["coarse"].numpy() == np.isin(y["classes"].numpy(), (2, 3, 4, 5, 6, 7))).all()  # bird..horse
    assert data.x["train"].shape[1:] == (3, 32, 32) and data.tasks[2].n_outputs == 3 * 32 * 32
    assert "animal" in data.tasks[1].about["grouping"]


def test_a_multi_task_batch_refuses_a_continual_selection(capsys):
    assert main(["batch", "--profile", "mtl", "--strategies", "naive"]) == 2
    assert "--streams/--strategies do not apply" in capsys.readouterr().err


def test_hatswap_run_points_an_mtl_profile_to_the_right_command(capsys):
    assert main(["run", "--profile", "mtl"]) == 2
    assert "hatswap batch --profile mtl" in capsys.readouterr().err
