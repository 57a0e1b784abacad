"""Where a batch's runs execute: one after another in this process (`local`, the default) or as Ray tasks (`ray`).

Both call `execute_run` with the batch's run function (`run(config, force=) → (folder, status)`: a continual or a
multi-task run) for every config, so a run does exactly the same work either way: it claims its folder (a live
claim by another process is a skip), trains, and writes the folder atomically (benchmark/outputs/results.py). They
differ only in where and how many at once. `map` yields (config, RunOutcome) as runs finish: in the configs' order
locally, in completion order on Ray. The batch (benchmark/grid/batch.py) turns outcomes into progress lines, the
failure list and one report at the end.

Ray: `ray.init()` starts a Ray instance embedded on this machine (or joins `--ray-address`); each run is one
task with `--cpus-per-run` CPUs and `--gpus-per-run` GPUs (fractional: 0.25 lets four runs share a GPU; Ray sets
CUDA_VISIBLE_DEVICES for the task). A task's torch uses as many threads as its CPUs unless the config says
`--threads`. On a cluster every node needs this package installed (the same version) and must see the data root,
the results folder and the cache folder at the same paths (shared storage): a task writes its run folder itself.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from benchmark.errors import RunFailed, UserError
from benchmark.grid.ray_reaper import start_reaper
from benchmark.runtime.library_warnings import quiet_library_warnings

quiet_library_warnings()  # a Ray worker imports this module first (to unpickle its task): before avalanche loads


@dataclass(frozen=True)
class RunOutcome:
    status: str  # done | skipped | skipped (why) | FAILED
    seconds: float
    error: str | None = None  # one line, for the batch's failure list


def execute_run(run, cfg, force: bool = False, debug: bool = False, threads: int | None = None,
                setup=None, batch: str = "") -> RunOutcome:
    """run(cfg, force=) once, any failure caught and turned into an outcome: one broken run must not cost the
    others. threads: torch's CPU threads when the config leaves them open (a Ray task: its CPUs). setup: a
    module-level function a fresh worker calls first (the composition root's registrations, e.g. the multi-task
    architectures as models: benchmark/mtl/continual.py)."""
    import torch

    from benchmark.outputs.results import skip_reason

    if setup is not None:
        setup()
    if threads and not cfg.threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        takes_batch = "batch" in inspect.signature(run).parameters  # continual runs (multi-task: no checkpoints)
        folder, status = run(cfg, force=force, **({"batch": batch} if batch and takes_batch else {}))
        if status == "skipped" and (why := skip_reason(folder)) != "done":
            status = f"skipped ({why})"
        error = None
    except (UserError, RunFailed) as e:
        status, error = "FAILED", str(e)
    except Exception as e:
        status, error = "FAILED", f"{type(e).__name__}: {e}"
        if debug:
            traceback.print_exc()
    return RunOutcome(status, time.perf_counter() - t0, error)


class LocalExecutor:
    parallel = 1

    def start(self) -> None:
        pass

    def describe(self) -> str:
        return "local: one run at a time"

    def map(self, run, configs, force=False, debug=False) -> Iterator[tuple[object, RunOutcome]]:
        for cfg in configs:
            yield cfg, execute_run(run, cfg, force, debug)


# How long joining a Ray cluster (--ray-address) may take before the batch gives up: Ray's own bound for one
# connection attempt (and Ray Client's for all of its), where Ray by itself tries twenty times.
JOIN_TIMEOUT_S = 30.0


def join_knobs(seconds: float) -> dict[str, str]:
    """Ray's settings (environment variables) that bound ray.init(address) to about `seconds`: one connection
    attempt instead of twenty (RAY_gcs_server_port_wait_time_s: Ray's own override of that count), whose two gRPC
    channel waits (a warning each, 5 s by default), its wait for the GCS to answer and Ray's 1 s pause after a failed
    try add up to `seconds`. Measured against an address where nothing listens (Ray 2.60, one process): 4.4 s for 4,
    10.0 s for 10, 30.0 s for 30; left alone, Ray makes twenty tries of about 41 s each."""
    channel = max(1, min(5, round(seconds / 6)))
    return {"RAY_gcs_server_port_wait_time_s": "1", "RAY_gcs_rpc_server_connect_timeout_s": str(channel),
            "RAY_py_gcs_connect_timeout_s": str(max(1, round(seconds) - 2 * channel - 1))}


def reread_ray_config() -> None:
    """Make Ray read its RAY_* settings from the environment again (it reads them once, when imported); Ray does the
    same when it turns on token authentication."""
    try:
        from ray._raylet import Config
    except ImportError:
        return
    Config.initialize("")


@contextlib.contextmanager
def held_stderr():
    """What is written to file descriptor 2 (by Python and by C++ alike) is held back; → a list that holds it, as
    one string, once the block ends."""
    held: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as file:
        saved = os.dup(2)
        os.dup2(file.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            file.seek(0)
            held.append(file.read().decode(errors="replace"))


class RayExecutor:
    """Each run a Ray task. address: None = a Ray instance embedded on this machine (stopped at the end, and killed
    with the batch: benchmark/grid/ray_reaper.py); an address (`auto`, `ray://host:10001`, `host:6379`) joins a running
    cluster, giving up after join_timeout seconds. retries: how often Ray runs a task again whose worker died (a
    pre-empted node, the out-of-memory killer, kill -9); the retry resumes from the run's last checkpoint
    (benchmark/harness/checkpoint.py). A run that fails by itself (an error in it) is not retried."""

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 num_cpus: int | None = None, join_timeout: float = JOIN_TIMEOUT_S, setup=None, retries: int = 2):
        if cpus_per_run <= 0 or gpus_per_run < 0 or not math.isfinite(cpus_per_run + gpus_per_run):
            raise UserError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got {cpus_per_run} and "
                            f"{gpus_per_run}")
        if retries < 0:
            raise UserError(f"--ray-retries must be ≥ 0, got {retries}")
        if not 4 <= join_timeout < math.inf:  # one try of Ray's takes 4 s at least (join_knobs)
            raise UserError(f"--ray-timeout must be at least 4 (seconds), got {join_timeout}")
        # Ray folds log lines that differ only in numbers ("[repeated 3x across cluster]"), which hides runs' lines;
        # it reads the switch when imported
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        try:
            import ray
        except ImportError as e:
            raise UserError("--executor ray needs Ray: pip install 'hatswap[ray]' (or drop --executor ray)") from e
        self.ray, self.address, self.num_cpus, self.join_timeout = ray, address, num_cpus, join_timeout
        self.cpus, self.gpus, self.setup = cpus_per_run, gpus_per_run, setup  # setup: see execute_run
        self.parallel, self.retries = 1, retries
        self._stop_reaper = None  # set while an embedded Ray this executor started runs

    def describe(self) -> str:
        where = f"cluster {self.address}" if self.address else "embedded on this machine"
        return (f"ray {where}: {self.cpus:g} CPU + {self.gpus:g} GPU per run, up to {self.parallel} at once, a run "
                f"whose worker dies retried up to {self.retries}×")

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            if self.address:
                self._join()
            else:
                self._start_embedded()
        total = ray.cluster_resources()
        by_cpu = int(total.get("CPU", 0) // self.cpus)
        by_gpu = int(total.get("GPU", 0) // self.gpus) if self.gpus else by_cpu
        if min(by_cpu, by_gpu) < 1:
            self.stop()
            raise UserError(f"Ray has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs: not enough for "
                            f"one run at --cpus-per-run {self.cpus:g} --gpus-per-run {self.gpus:g}")
        self.parallel = min(by_cpu, by_gpu)

    def _init(self, **kwargs) -> None:
        self.ray.init(address=self.address, include_dashboard=False, logging_level="ERROR", configure_logging=True,
                      **kwargs)

    def _start_embedded(self) -> None:
        folder, self._stop_reaper = start_reaper()
        try:
            self._init(num_cpus=self.num_cpus, _temp_dir=folder)
        except (ConnectionError, RuntimeError, ValueError) as e:
            self.stop()
            raise UserError(f"cannot start Ray on this machine ({e}); use --executor local") from e

    def _join(self) -> None:
        """ray.init(address) within about join_timeout seconds: Ray's own patience is twenty tries of 30 s each."""
        client = self.address.startswith("ray://")  # Ray Client gives up by itself, after three tries in 30 s
        patience = 30 if client else self.join_timeout
        print(f"[batch] joining Ray at {self.address} (giving up after {patience:g} s)", file=sys.stderr)
        knobs = {} if client else join_knobs(self.join_timeout)
        before = {name: os.environ.get(name) for name in knobs}
        os.environ.update(knobs)
        reread_ray_config()
        try:
            with held_stderr() as held:  # Ray's C++ warnings while it waits: shown only if it joins after all
                self._init()
            sys.stderr.write("".join(held))
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot join Ray at {self.address} within {patience:g} s "
                            f"({str(e).splitlines()[0]}); start a cluster there (`ray start --head`, then "
                            f"--ray-address HOST:6379; --ray-timeout waits longer), drop --ray-address to start Ray on "
                            f"this machine, or use --executor local") from e
        finally:
            for name, value in before.items():  # a later embedded Ray must not start with one try of its own
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if not self.ray.is_initialized():
                reread_ray_config()

    def stop(self) -> None:
        """Stop an embedded Ray (a joined cluster keeps running) and its watchdog."""
        if not self.address:
            self.ray.shutdown()
        if self._stop_reaper:
            self._stop_reaper()
            self._stop_reaper = None

    def map(self, run, configs, force=False, debug=False) -> Iterator[tuple[object, RunOutcome]]:
        ray = self.ray  # started by the batch (start)
        task = ray.remote(execute_run).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries)
        threads = max(1, int(self.cpus))
        batch = uuid.uuid4().hex  # a retried task of a --force batch keeps the checkpoint its first attempt wrote
        pending = {task.remote(run, cfg, force, debug, threads, self.setup, batch): cfg for cfg in configs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cfg = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as e:  # the worker died (killed, out of memory): that run failed
                        outcome = RunOutcome("FAILED", 0.0, f"Ray task failed: {str(e).splitlines()[0]}")
                    yield cfg, outcome
        finally:
            for ref in pending:  # an interrupted batch leaves no task running behind it
                ray.cancel(ref, force=True)
            self.stop()
