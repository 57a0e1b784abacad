"""Where a batch's runs execute: one after another in this process (`local`, the default) or as Ray tasks (`ray`).

Both call `execute_run` with the batch's run function (`run(config, force=) → (folder, status)`: a continual or a
multi-task run) for every config, so a run does exactly the same work either way: it claims its folder (a live
claim by another process is a skip), trains, and writes the folder atomically (benchmark/results.py). They differ
only in where and how many at once. `map` yields (config, RunOutcome) as runs finish: in the configs' order
locally, in completion order on Ray. The batch (benchmark/batch.py) turns outcomes into progress lines, the
failure list and one report at the end.

Ray: `ray.init()` starts a Ray instance embedded on this machine (or joins `--ray-address`); each run is one
task with `--cpus-per-run` CPUs and `--gpus-per-run` GPUs (fractional: 0.25 lets four runs share a GPU; Ray sets
CUDA_VISIBLE_DEVICES for the task). A task's torch uses as many threads as its CPUs unless the config says
`--threads`. On a cluster every node needs this package installed (the same version) and must see the data root,
the results folder and the cache folder at the same paths (shared storage): a task writes its run folder itself.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

from benchmark.errors import RunFailed, UserError
from benchmark.library_warnings import quiet_library_warnings

quiet_library_warnings()  # a Ray worker imports this module first (to unpickle its task): before avalanche loads


@dataclass(frozen=True)
class RunOutcome:
    status: str  # done | skipped | skipped (why) | FAILED
    seconds: float
    error: str | None = None  # one line, for the batch's failure list


def execute_run(run, cfg, force: bool = False, debug: bool = False, threads: int | None = None) -> RunOutcome:
    """run(cfg, force=) once, any failure caught and turned into an outcome: one broken run must not cost the
    others. threads: torch's CPU threads when the config leaves them open (a Ray task: its CPUs)."""
    import torch

    from benchmark.results import skip_reason

    if threads and not cfg.threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        folder, status = run(cfg, force=force)
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


class RayExecutor:
    """Each run a Ray task. address: None = a Ray instance embedded on this machine (stopped at the end); an address
    (`auto`, `ray://host:10001`, `host:6379`) joins a running cluster."""

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 num_cpus: int | None = None):
        if cpus_per_run <= 0 or gpus_per_run < 0 or not math.isfinite(cpus_per_run + gpus_per_run):
            raise UserError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got {cpus_per_run} and "
                            f"{gpus_per_run}")
        # Ray folds log lines that differ only in numbers ("[repeated 3x across cluster]"), which hides runs' lines;
        # it reads the switch when imported
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        try:
            import ray
        except ImportError as e:
            raise UserError("--executor ray needs Ray: pip install 'hatswap[ray]' (or drop --executor ray)") from e
        self.ray, self.address, self.num_cpus = ray, address, num_cpus
        self.cpus, self.gpus = cpus_per_run, gpus_per_run
        self.parallel = 1

    def describe(self) -> str:
        where = f"cluster {self.address}" if self.address else "embedded on this machine"
        return (f"ray {where}: {self.cpus:g} CPU + {self.gpus:g} GPU per run, up to {self.parallel} at once")

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                         include_dashboard=False, logging_level="ERROR", configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(f"cannot start or join Ray ({e}); check --ray-address, or drop it to start Ray on "
                                f"this machine") from e
        total = ray.cluster_resources()
        by_cpu = int(total.get("CPU", 0) // self.cpus)
        by_gpu = int(total.get("GPU", 0) // self.gpus) if self.gpus else by_cpu
        if min(by_cpu, by_gpu) < 1:
            raise UserError(f"Ray has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs: not enough for "
                            f"one run at --cpus-per-run {self.cpus:g} --gpus-per-run {self.gpus:g}")
        self.parallel = min(by_cpu, by_gpu)

    def map(self, run, configs, force=False, debug=False) -> Iterator[tuple[object, RunOutcome]]:
        ray = self.ray  # started by the batch (start)
        task = ray.remote(execute_run).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        threads = max(1, int(self.cpus))
        pending = {task.remote(run, cfg, force, debug, threads): cfg for cfg in configs}
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
            if not self.address:
                ray.shutdown()
