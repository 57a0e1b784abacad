"""A run killed with SIGKILL during experience k restarts from the end of experience k − 1 and ends bit-identical to
an uninterrupted run (benchmark/harness/checkpoint.py): `hatswap run` in a subprocess, killed during each
experience in turn, for a strategy of each family — regularisation (ewc), replay (replay), distillation (lwf) and
gradient projection (agem). A kill lands when the previous experience's checkpoint appears (the process is then
training the next); 30 epochs make each experience last about a second, so the kill lands inside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmark.config import parse_config
from benchmark.harness.checkpoint import checkpoint_dir
from benchmark.harness.run import run
from tests.conftest import tiny_args
from tests.golden_files import continual_record

REPO = Path(__file__).resolve().parents[1]
EPOCHS = ("--epochs", "30", "--checkpoint", "on", "--threads", "1")  # one thread, as the in-process run


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "benchmark", "run", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def wait_for(condition, proc: subprocess.Popen, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.005)


# The process-level path is the same for every strategy, and tests/test_checkpoints.py resumes each one in-process:
# two families run by default (the suite's time), all four with HATSWAP_SLOW=1.
FAMILIES = [pytest.param("ewc", marks=pytest.mark.slow), "replay", "lwf", pytest.param("agem", marks=pytest.mark.slow)]


@pytest.mark.parametrize("strategy", FAMILIES)
def test_a_run_killed_during_each_experience_resumes_bit_identical(strategy, fmnist_root, tmp_path):
    args = tiny_args(tmp_path / "killed", fmnist_root, "--strategy", strategy, *EPOCHS)
    cfg, _ = parse_config(tiny_args(tmp_path / "whole", fmnist_root, "--strategy", strategy, *EPOCHS))
    whole = continual_record(run(cfg)[0])
    folder = tmp_path / "killed" / "runs" / "binary_tasks" / strategy / "seed0"
    ckpt = checkpoint_dir(folder)
    for k in range(3):
        log = tmp_path / f"kill{k}.log"
        proc = start(args, log)
        if k == 0:  # before experience 0's checkpoint: the run is claimed, its stream built, training under way
            wait_for(lambda log=log: "backbone vit_tiny" in log.read_text(), proc, "start of training")
            time.sleep(0.3)
        else:
            wait_for(lambda k=k: (ckpt / f"exp{k}.json").exists(), proc, f"checkpoint of experience {k - 1}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        newest = sorted(p.name for p in ckpt.glob("exp*.json")) if ckpt.exists() else []
        assert newest == ([f"exp{k}.json"] if k else []), f"the kill did not land in experience {k}: {newest}"
        assert not folder.exists()
    log = tmp_path / "resumed.log"
    proc = start(args, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    assert f"resuming from {ckpt} after experience 1" in log.read_text()
    assert continual_record(folder) == whole
    assert not ckpt.exists()


def test_a_ray_task_whose_worker_is_killed_is_retried_and_resumes_from_its_checkpoint(fmnist_root, tmp_path):
    pytest.importorskip("ray", reason="Ray is part of the dev install: pip install -e '.[dev]'")
    from benchmark.grid.batch import run_batch
    from benchmark.grid.executors import RayExecutor

    cfg, _ = parse_config(tiny_args(tmp_path / "whole", fmnist_root, "--strategy", "lwf", *EPOCHS))
    whole = continual_record(run(cfg)[0])
    folder = tmp_path / "ray" / "runs" / "binary_tasks" / "lwf" / "seed0"
    killed = []

    def kill_the_worker():  # once experience 0's checkpoint is written: the pid in the run's lock file
        deadline = time.monotonic() + 900  # Ray's workers run niced: on a loaded machine an experience takes minutes
        while not (checkpoint_dir(folder) / "exp1.json").exists():
            if time.monotonic() > deadline:
                return  # never killed: `killed` stays empty and the test says so
            time.sleep(0.005)
        pid = int(folder.with_name(f".{folder.name}.lock").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    args = tiny_args(tmp_path / "ray", fmnist_root, *EPOCHS)[2:]
    assert run_batch("smoke", args, strategies=["lwf"], executor=RayExecutor(num_cpus=1, retries=1)) == 0
    killer.join(timeout=5)
    assert killed and killed[0] != os.getpid(), "the worker was never killed: experience 0's checkpoint never came"
    assert continual_record(folder) == whole
    # the retry resumed after experience 0 (recorded by the run itself: Ray's forwarding of the worker's log lines
    # may lag behind the batch's end on a loaded machine)
    assert json.loads((folder / "summary.json").read_text())["resumed_after"] == [1]
