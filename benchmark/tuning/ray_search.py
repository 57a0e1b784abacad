"""The search on Ray Tune (`hatswap tune --executor ray`): OptunaSearch (TPE, the local search's sampler) and
ASHAScheduler over experiences, each trial a Ray Tune function trainable with `--cpus-per-trial` CPUs. Ray starts
on this machine (and is stopped and reaped with the command: benchmark/grid/ray_reaper.py) or joins `--ray-address`,
exactly as `hatswap batch --executor ray` does (benchmark/grid/executors.py). The experiment lives under the tuning
folder (`ray/`); the same command after a kill restores it (Tuner.restore), resuming unfinished trials."""

from __future__ import annotations

import json
import os
import time
from functools import partial

from ray import tune

from benchmark.tuning.search import REDUCTION, Tuning, say, trial_line
from benchmark.tuning.space import Dist
from benchmark.tuning.trial import run_trial


def ray_trial(params: dict, *, t: Tuning, threads: int, horizon: int) -> None:
    """One trial in a Ray worker: the run, reporting after every experience (ASHA may stop it there)."""
    import torch

    torch.set_num_threads(threads)
    trial_dir = t.folder / "trials" / tune.get_context().get_trial_id()
    t0 = time.perf_counter()

    def report(k, score, row):
        tune.report({"score": score, "experience": k, "row": json.dumps(row),
                     "seconds": time.perf_counter() - t0})

    run_trial(t.argv(params, trial_dir), report, t.objective, horizon)


def ray_search(t: Tuning, space: dict[str, Dist], horizon: int) -> list[dict]:
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from benchmark.grid.executors import RayExecutor

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials keep the command's working directory
    # the experiment's state (trial statuses, searcher) saved at every step, not every 10 s or more: a trial that
    # finished before a kill is restored as finished
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray Tune's console tables off (verbose=0); our lines stay
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard copies per trial
    cpus, gpus = t.ray.get("cpus_per_trial", 1.0), t.ray.get("gpus_per_trial", 0.0)
    executor = RayExecutor(t.ray.get("address"), cpus, gpus, join_timeout=t.ray.get("join_timeout", 30.0))
    executor.start()
    try:
        trial = partial(ray_trial, t=t, threads=max(1, int(cpus)), horizon=horizon)
        trainable = tune.with_resources(trial, {"cpu": cpus, "gpu": gpus})
        path = str(t.folder / "ray")
        progress = ProgressLines(t.trials, horizon)
        if tune.Tuner.can_restore(path):
            say(f"resuming the Ray Tune experiment in {path}")
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            searcher = OptunaSearch(space={k: d.optuna() for k, d in space.items()}, metric="score", mode="max",
                                    sampler=optuna.samplers.TPESampler(seed=t.seed,
                                                                       n_startup_trials=t.startup_trials()))
            scheduler = (ASHAScheduler(time_attr="experience", max_t=horizon, grace_period=1,
                                       reduction_factor=REDUCTION) if t.asha else FIFOScheduler())
            tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
                metric="score", mode="max", search_alg=searcher, scheduler=scheduler, num_samples=t.trials,
                max_concurrent_trials=executor.parallel), run_config=tune.RunConfig(
                name="ray", storage_path=str(t.folder), verbose=0, callbacks=[progress],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
        grid = tuner.fit()
        return [_ray_trial_record(r, n, horizon) for n, r in enumerate(sorted(grid, key=_trial_id))]
    finally:
        executor.stop()


def _trial_id(result) -> str:
    return os.path.basename(result.path)


def _ray_trial_record(result, number: int, horizon: int) -> dict:
    metrics = result.metrics or {}
    experiences = int(metrics.get("experience", 0) or 0)
    state = "failed" if result.error else ("complete" if experiences >= horizon else "stopped")
    history = result.metrics_dataframe
    by_exp = [] if history is None or "score" not in history else history["score"].tolist()
    return {"number": number, "trial_id": metrics.get("trial_id", _trial_id(result)),
            "params": dict(result.config or {}), "state": state,
            "score": metrics.get("score") if state != "failed" else None, "experiences": experiences,
            "scores_by_experience": by_exp, "seconds": metrics.get("seconds"),
            "error": (f"{type(result.error).__name__}: {str(result.error).splitlines()[0]}" if result.error else None)}


class ProgressLines(tune.Callback):
    """One line per finished trial, numbered among the experiment's finished trials (restored ones included)."""

    def __init__(self, total: int, horizon: int):
        self.total, self.horizon = total, horizon

    def _line(self, trials, trial, state):
        finished = sum(x.status in ("TERMINATED", "ERROR") for x in trials if x is not trial) + 1
        last = trial.last_result or {}
        k = int(last.get("experience", 0) or 0)
        if state == "complete" and k < self.horizon:
            state = "stopped"
        say(trial_line(finished, self.total, trial.trial_id, state, trial.config, last.get("score"), k,
                       self.horizon, last.get("seconds", 0.0) or 0.0))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trials, trial, "complete")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trials, trial, "failed")
