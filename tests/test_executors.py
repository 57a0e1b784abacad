"""The batch's executors: Ray gives the same run folders as local runs, keeps going past a failure and resumes; runs
in parallel on one feature-cache key extract once."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.grid.batch import run_batch
from benchmark.harness.run import run
from tests.conftest import tiny_args

STRATEGIES = ["naive", "joint", "lwf", "replay"]
REPO = Path(__file__).resolve().parent.parent


def _matrices(out):
    return {p.relative_to(out): p.read_text() for p in sorted((out / "runs").rglob("matrix.csv"))}


def test_ray_batch_equals_local_lists_a_failure_and_resumes(tmp_path, fmnist_root, capsys):
    pytest.importorskip("ray", reason="Ray is part of the dev install: pip install -e '.[dev]'")
    from benchmark.grid.executors import RayExecutor

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
    from benchmark.grid.executors import RayExecutor

    with pytest.raises(UserError, match="--cpus-per-run must be > 0"):
        RayExecutor(cpus_per_run=0)
    assert main(["batch", "--profile", "smoke", "--ray-timeout", "5"]) == 2
    assert "apply to --executor ray" in capsys.readouterr().err
    with pytest.raises(UserError, match="--ray-timeout must be at least 4"):
        RayExecutor(join_timeout=1)


def test_joining_an_address_where_no_ray_listens_gives_up_in_time_and_names_the_ways_out(tmp_path):
    """Ray by itself tries twenty times for 30 s each: the batch sat there for minutes, saying nothing."""
    pytest.importorskip("ray", reason="Ray is part of the dev install: pip install -e '.[dev]'")
    proc = subprocess.run([sys.executable, "-m", "benchmark", "batch", "--profile", "smoke", "--executor", "ray",
                           "--ray-address", "127.0.0.1:1", "--ray-timeout", "4", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=90)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert last.startswith("hatswap: error: cannot join Ray at 127.0.0.1:1 within 4 s")
    assert "`ray start --head`" in last and "--executor local" in last and "drop --ray-address" in last


def _children() -> dict[int, list[int]]:
    """parent pid → its children's pids, from /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
    return children


def _descendants(pid: int) -> dict[int, int]:
    """Every process below `pid` → its depth (1: a child)."""
    children, found, todo = _children(), {}, [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in children.get(parent, []):
            found[child] = depth + 1
            todo.append((child, depth + 1))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed process that init has not reaped yet is gone for our purpose)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_embedded_ray_dies_with_its_batch_even_on_kill_9(tmp_path, fmnist_root):
    """The raylet's children (Ray's agents) outlived a kill -9 of the batch, adopted by init, for good."""
    pytest.importorskip("ray", reason="Ray is part of the dev install: pip install -e '.[dev]'")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        batch = subprocess.Popen([sys.executable, "-m", "benchmark", "batch", "--executor", "ray",
                                  *tiny_args(tmp_path / "out", fmnist_root, "--threads", "1")], cwd=REPO,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    ray_processes: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        # Ray is up once the batch says how many runs go at once, and its agents with it (the raylet's children)
        while not ("[batch] profile" in log.read_text() and max(ray_processes.values(), default=0) >= 2):
            assert batch.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
            ray_processes = _descendants(batch.pid)
        batch.send_signal(signal.SIGKILL)
        batch.wait()
        deadline = time.monotonic() + 20
        while (left := [pid for pid in ray_processes if _running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in left]
    finally:
        if batch.poll() is None:
            batch.kill()
        for pid in ray_processes:  # what this test started, should the batch have left it
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _extract_in_parallel(argv, barrier, out_file):
    """A child process: build the run's stream and frozen model, wait for the other child, then ask the cache."""
    import torch

    from benchmark.harness import feature_cache
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
    from benchmark.grid.executors import RayExecutor
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
