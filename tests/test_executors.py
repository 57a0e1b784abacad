"""The batch's executors: Ray gives the same run folders as local runs, keeps going past a failure and resumes; runs
in parallel on one feature-cache key extract once."""

import json
import multiprocessing
import sys
import time

import pytest

from benchmark.batch import run_batch
from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.run import run
from tests.conftest import tiny_args

STRATEGIES = ["naive", "joint", "lwf", "replay"]


def _matrices(out):
    return {p.relative_to(out): p.read_text() for p in sorted((out / "runs").rglob("matrix.csv"))}


def test_ray_batch_equals_local_lists_a_failure_and_resumes(tmp_path, fmnist_root, capsys):
    pytest.importorskip("ray", reason="Ray is part of the dev install: pip install -e '.[dev]'")
    from benchmark.executors import RayExecutor

    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert run_batch("smoke", tiny_args(local, fmnist_root, "--threads", "1")[2:], strategies=STRATEGIES) == 0
    # a folder holding another config's results makes exactly this run fail, on Ray as locally
    blocked, _ = run(parse_config(tiny_args(on_ray, fmnist_root, "--strategy", "lwf", "--lr", "0.0123"))[0])
    capsys.readouterr()
    args = tiny_args(on_ray, fmnist_root, "--threads", "1")[2:]
    code = run_batch("smoke", args, strategies=STRATEGIES, executor=RayExecutor(num_cpus=2))
    err = capsys.readouterr().err
    assert code == 1 and "binary_tasks/lwf/seed0 failed" in err and "up to 2 at once" in err
    assert "binary_tasks/lwf/seed0" in (on_ray / "failed_runs.txt").read_text()
    same = {k: v for k, v in _matrices(local).items() if "lwf" not in str(k)}
    assert {k: v for k, v in _matrices(on_ray).items() if "lwf" not in str(k)} == same and len(same) == 3

    (blocked / "summary.json").unlink()  # incomplete now: the rerun redoes only it
    code = run_batch("smoke", args, strategies=STRATEGIES, executor=RayExecutor(num_cpus=2))
    err = capsys.readouterr().err
    assert code == 0 and "lwf/seed0: done" in err and err.count(": skipped") == 3
    assert _matrices(on_ray) == _matrices(local)  # every matrix.csv identical to the local batch's
    assert not (on_ray / "failed_runs.txt").exists()


def test_executor_flags_name_their_fix(tmp_path, monkeypatch, capsys):
    assert main(["batch", "--profile", "smoke", "--cpus-per-run", "2"]) == 2
    assert "apply to --executor ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["batch", "--profile", "smoke", "--executor", "ray"]) == 2
    assert "pip install 'hatswap[ray]'" in capsys.readouterr().err
    from benchmark.executors import RayExecutor

    with pytest.raises(UserError, match="--cpus-per-run must be > 0"):
        RayExecutor(cpus_per_run=0)


def _extract_in_parallel(argv, barrier, out_file):
    """A child process: build the run's stream and frozen model, wait for the other child, then ask the cache."""
    import torch

    from benchmark import feature_cache
    from benchmark.models.hatswap_net import build_model
    from benchmark.registry import STREAMS

    cfg, _ = parse_config(argv)
    bench = STREAMS.get(cfg.stream).build(cfg.stream_args, seed=cfg.seed, data_root=cfg.data_root, download=False,
                                          apt_install=False)
    x0 = bench.scenario.test_stream[0].dataset[0][0]
    model, backbone_id = build_model(cfg, bench.tasks, image_size=x0.shape[-1], in_chans=x0.shape[0])
    extract = feature_cache.extract

    def slow_extract(*args, **kwargs):  # widen the window in which both children would see a miss
        time.sleep(1.0)
        return extract(*args, **kwargs)

    feature_cache.extract = slow_extract
    barrier.wait()
    _, _, ident = feature_cache.use_feature_cache(cfg, bench, model, backbone_id, torch.device("cpu"), log=lambda m: 0)
    out_file.write_text(json.dumps({split: info["status"] for split, info in ident["feature_cache"].items()}))


def test_parallel_runs_on_one_cache_key_extract_once(tmp_path, fmnist_root):
    argv = tiny_args(tmp_path / "results", fmnist_root, "--backbone-mode", "frozen", "--cache-dir",
                     str(tmp_path / "cache"))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"child{i}.json" for i in range(2)]
    children = [ctx.Process(target=_extract_in_parallel, args=(argv, barrier, out)) for out in outs]
    for c in children:
        c.start()
    for c in children:
        c.join(120)
    assert [c.exitcode for c in children] == [0, 0]
    statuses = [json.loads(o.read_text()) for o in outs]
    for split in ("train", "test"):  # one child extracted each split; the other waited for it and read it
        assert sorted(s[split] for s in statuses) == ["hit", "miss"], statuses


def test_a_multi_task_batch_on_ray_equals_the_local_one(tmp_path, fmnist_root):
    """The one batch runner: an MTL profile's experiments (and derived baselines) run as Ray tasks too."""
    pytest.importorskip("ray", reason="Ray is part of the dev install: pip install -e '.[dev]'")
    from benchmark.executors import RayExecutor
    from benchmark.mtl.batch import run_mtl_batch
    from tests.test_mtl_run import TINY

    profile = {"kind": "mtl", "seeds": [0], "config": {"epochs": 2},
               "experiments": [{"name": "both", "tasks": "classes,coarse"}]}
    for where, executor in (("local", None), ("ray", RayExecutor(num_cpus=2))):
        args = ["--data-root", str(fmnist_root), "--out-dir", str(tmp_path / where), "--threads", "1", *TINY]
        assert run_mtl_batch("t", profile, args, executor=executor) == 0
    local, on_ray = ({p.relative_to(tmp_path / w): p.read_text() for p in sorted((tmp_path / w).rglob("matrix.csv"))}
                     for w in ("local", "ray"))
    assert local == on_ray and len(local) == 3  # both + its two derived single-task baselines
