"""`hatswap tune`: the search over one strategy's space (space.py) on one profile's stream, on validation data.

The same search on either engine: Optuna's TPE (Bergstra et al. 2011; seeded, its first trials random) proposes
arguments; asynchronous successive halving (ASHA, Li et al. 2020; rungs after experience 1, 2, 4, …, keeping the
best half) stops a trial whose validation objective after an experience is in the lower half of the trials that
reached it. `--executor local`: Optuna in this process, one trial at a time (its TPESampler and
SuccessiveHalvingPruner, an SQLite study). `--executor ray`: Ray Tune on a Ray instance on this machine or the
cluster at `--ray-address` (OptunaSearch with the same sampler, ASHAScheduler), trials in parallel.

Resumable: everything lives under the tuning folder (`--out-dir`/tune/<profile>/<strategy>); the same command after
a kill resumes it (the SQLite study; Ray Tune's experiment restore) and never redoes a finished trial: a trial's
run folder is atomic, and a finished one is read back. A trial that fails is recorded with its error and the search
goes on. The record (record.py) is written when the search ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UserError
from benchmark.outputs.results import git_state
from benchmark.tuning.record import record_path, write_record
from benchmark.tuning.space import Dist, search_space
from benchmark.tuning.trial import StopTrial, check_stream_has_val, run_trial, trial_argv

REDUCTION = 2  # ASHA's reduction factor (rungs at 1, 2, 4, … experiences; the top 1/2 go on)


@dataclass
class Tuning:
    """One search: what it tunes, on what, how, and where its files are."""

    profile: str
    strategy: str
    stream: str
    trials: int = 16
    seed: int = 0  # the runs' seed (data, initial weights) and the searcher's
    objective: str = "acc"
    executor: str = "local"
    asha: bool = True
    out_dir: Path = Path("results")
    record_dir: Path | None = None  # None: benchmark/tuned
    run_args: list[str] = field(default_factory=list)  # flags for every trial run (`--wandb offline`, `--epochs 2`)
    ray: dict = field(default_factory=dict)  # address, cpus_per_trial, gpus_per_trial, join_timeout
    wandb: str = "off"  # the trials' --wandb (read from their config)

    @property
    def folder(self) -> Path:
        return Path(self.out_dir).resolve() / "tune" / self.profile / self.stream / self.strategy

    @property
    def group(self) -> str:
        return f"tune-{self.profile}-{self.strategy}"

    def startup_trials(self) -> int:
        """TPE's random start: a third of the trials (at least 2, at most Optuna's default 10)."""
        return max(2, min(10, self.trials // 3))

    def argv(self, params: dict, trial_dir: Path) -> list[str]:
        return trial_argv(self.profile, self.strategy, self.stream, self.seed, params, trial_dir, self.run_args,
                          self.group)


def need_tune_packages():
    try:
        import optuna  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as e:
        raise UserError(f"hatswap tune needs Ray Tune and Optuna ({e.name or e} is missing): pip install -e "
                        f"'.[tune]'") from None


def stream_length(t: Tuning) -> tuple[int, object]:
    """(experiences of the tuned stream: ASHA's horizon, a trial's config), from the stream as a trial builds it;
    bad flags or missing data fail here, before any trial."""
    from benchmark.config import parse_config
    from benchmark.registry import DEFAULT_MODEL, STREAMS

    cfg, _ = parse_config(t.argv({}, t.folder / "probe"))
    if cfg.architecture != DEFAULT_MODEL:  # a record is per profile and strategy: it would pass for the network's
        raise UserError(f"hatswap tune searches a strategy on the Hat Swap network; --architecture "
                        f"{cfg.architecture} has no tuning records yet: drop --architecture")
    if cfg.tuned_from:
        raise UserError(f"profile {t.profile} applies tuned arguments ({cfg.tuned_from}); tune the profile they come "
                        f"from, without --tuned")
    bench = STREAMS.get(cfg.stream).build(cfg.stream_args, seed=cfg.seed, data_root=cfg.data_root,
                                          download=cfg.download, apt_install=cfg.apt_install)
    return len(bench.scenario.train_stream), cfg


def claim_folder(t: Tuning, space: dict[str, Dist], protocol: str = "joint") -> None:
    """The tuning folder holds one search: its identity (search.json) is written once; the same command resumes
    it, a different search (another objective, space, seed, engine or trial flags) is refused, not mixed in."""
    import json

    identity = {"profile": t.profile, "strategy": t.strategy, "stream": t.stream, "seed": t.seed,
                "objective": t.objective, "protocol": protocol, "asha": t.asha, "executor": t.executor,
                "run_args": t.run_args, "space": {k: d.describe() for k, d in space.items()}}
    path = t.folder / f"search-{protocol}.json"
    t.folder.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        old = json.loads(path.read_text())
        if differ := sorted(k for k in identity | old if old.get(k) != identity.get(k)):
            raise UserError(f"{t.folder} holds another search of {t.strategy} (it differs in {', '.join(differ)}); "
                            f"pass another --out-dir, or delete that folder to start over")
        return
    from benchmark.outputs.results import atomic_write

    atomic_write(path, json.dumps(identity, indent=2) + "\n")


def say(msg: str) -> None:
    print(f"[tune] {msg}", file=sys.stderr, flush=True)


def trial_line(n: int, total: int, number, state: str, params: dict, score, experiences: int, horizon: int,
               seconds: float) -> str:
    knobs = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    at = "" if experiences >= horizon or state != "stopped" else f" after experience {experiences}"
    value = "" if score is None else f" score {score:.4f}"
    return f"trial {number} ({n}/{total}) {state}{at}:{value} {knobs} ({seconds:.0f}s)"


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def tune(t: Tuning, search: Callable[[Tuning, dict, int], list[dict]]) -> Path:
    """Run (or resume) the search; write its record; → the record's path (`hatswap tune` has checked that Ray Tune
    and Optuna are installed, for either protocol). `search`: local_search (Optuna in this process) or ray_search
    (Ray Tune), as --executor says; the composition root (benchmark/cli.py) picks it, so that this module, which
    ray_search builds on, never imports it."""
    check_stream_has_val(t.stream)
    space = search_space(t.strategy)
    horizon, cfg = stream_length(t)  # bad flags fail before the folder is claimed
    claim_folder(t, space)
    t.wandb = cfg.wandb
    from benchmark.registry import STRATEGIES

    if STRATEGIES.get(t.strategy).meta.one_shot:  # joint: one training, one report (its only rung)
        horizon = 1
    say(f"{t.strategy} on profile {t.profile} ({t.stream}, validation split, seed {t.seed}): {t.trials} trials, "
        f"objective {t.objective}, TPE{' + ASHA' if t.asha else ''}, {t.executor}; space: "
        + ", ".join(f"{k} {_describe(d)}" for k, d in space.items()) + f"; folder {t.folder}")
    t0 = time.perf_counter()
    trials = search(t, space, horizon)
    wall = time.perf_counter() - t0
    record = make_record(t, space, horizon, trials, wall)
    path = record_path(t.profile, t.strategy, t.record_dir)
    write_record(path, record)
    best = record["best"]
    say(f"best: score {best['score']:.4f} with " + " ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
        + f" ({len(trials)} trials, {wall:.0f}s this session) → {path}")
    if t.wandb != "off":
        log_tuning_summary(t, record)
    return path


def log_tuning_summary(t: Tuning, record: dict) -> None:
    """One wandb run per tuning (group tune-<profile>-<strategy>, beside its trials' runs, job_type "tune-summary"):
    the trials table and the best arguments; offline-safe and failure-proof like every run's logging."""
    from benchmark.outputs.tracking import WandbTracker

    keys = list(record["space"])
    tracker = WandbTracker(t.wandb, out_dir=t.folder, name=f"{t.group} summary", group=t.group,
                           job_type="tune-summary", config={k: v for k, v in record.items() if k != "trials"})

    def log():
        import wandb

        rows = [[x["number"], x["state"], x["score"], x["experiences"], *(x["params"].get(k) for k in keys)]
                for x in record["trials"]]
        tracker.run.log({"trials": wandb.Table(columns=["trial", "state", "score", "experiences", *keys], data=rows)})
        tracker.run.summary["best_score"] = record["best"]["score"]
        for k, v in record["best"]["params"].items():
            tracker.run.summary[f"best/{k}"] = v

    tracker._guard(log)
    tracker.finish()


def _describe(d: Dist) -> str:
    return f"{{{', '.join(map(str, d.choices))}}}" if d.kind == "choice" else f"{d.kind} [{d.low:g}, {d.high:g}]"


def make_record(t: Tuning, space: dict, horizon: int, trials: list[dict], wall: float) -> dict:
    finished = [x for x in trials if x["state"] in ("complete", "stopped")]
    complete = [x for x in trials if x["state"] == "complete"]
    if not complete:
        raise UserError(f"no trial of {t.strategy} completed ({len(trials)} tried; see the lines above and "
                        f"{t.folder}); nothing to record")
    best = max(complete, key=lambda x: x["score"])
    return {
        "profile": t.profile, "strategy": t.strategy, "stream": t.stream, "eval_split": "val",
        "protocol": "validation data of every task, one search over the whole stream",
        "objective": t.objective, "seed": t.seed,
        "best": {"params": best["params"], "score": best["score"], "trial": best["number"]},
        "space": {k: d.describe() for k, d in space.items()},
        "searcher": {"name": "optuna TPE", "seed": t.seed, "random_start_trials": t.startup_trials(),
                     "optuna": _version("optuna")},
        "scheduler": ({"name": "ASHA", "time": "experiences trained", "grace": 1, "reduction_factor": REDUCTION,
                       "horizon": horizon} if t.asha else {"name": "none (every trial runs the whole stream)"}),
        "executor": t.executor, "ray": _version("ray") if t.executor == "ray" else None,
        "trials_requested": t.trials, "trials_finished": len(finished),
        "trials_failed": sum(x["state"] == "failed" for x in trials),
        "run_args": t.run_args, "git": git_state(), "wall_s_last_session": wall,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trials": sorted(trials, key=lambda x: x["number"]),
    }


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _trials_so_far(t: Tuning) -> int:
    """Trials the folder's study already holds: a resumed search's sampler gets a seed of its own (the same seed
    would propose the first trials' arguments again)."""
    import sqlite3
    from contextlib import closing

    db = t.folder / "optuna.sqlite3"
    if not db.is_file():
        return 0
    try:
        with closing(sqlite3.connect(db)) as con:
            return int(con.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
    except sqlite3.Error:
        return 0


# --- local: Optuna in this process ---------------------------------------------------------------------------------
def local_search(t: Tuning, space: dict[str, Dist], horizon: int) -> list[dict]:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="search", storage=f"sqlite:///{t.folder / 'optuna.sqlite3'}", load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=t.seed + _trials_so_far(t),
                                                                 n_startup_trials=t.startup_trials()),
        pruner=(optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION)
                if t.asha else optuna.pruners.NopPruner()))
    for old in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # killed mid-trial: run it again
        study._storage.set_trial_user_attr(old._trial_id, "error", "interrupted (the search was killed); rerun")
        study._storage.set_trial_state_values(old._trial_id, TrialState.FAIL)
        study.enqueue_trial(old.params, user_attrs={"rerun_of": old.user_attrs.get("rerun_of", old.number)})
        say(f"trial {old.number} was interrupted by a kill: running its arguments again")
    dists = {k: d.optuna() for k, d in space.items()}
    FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # noqa: N806

    def counted():  # finished trials; one a kill interrupted is run again, not counted
        return [x for x in study.get_trials(deepcopy=False, states=FINISHED)
                if not x.user_attrs.get("error", "").startswith("interrupted")]

    while len(done := counted()) < t.trials:
        trial = study.ask(dists)
        t0 = time.perf_counter()

        def report(k, score, row, trial=trial):
            trial.report(score, k)
            trial.set_user_attr("rows", trial.user_attrs.get("rows", []) + [row])
            if k < horizon and trial.should_prune():
                raise StopTrial(k)

        try:
            folder = t.folder / "trials" / f"{trial.user_attrs.get('rerun_of', trial.number):03d}"  # a rerun: its own
            result = run_trial(t.argv(trial.params, folder), report, t.objective, horizon)  # folder, read back if done
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, result["score"])
            state, score, k = "complete", result["score"], len(result["rows"])
        except StopTrial as e:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            study.tell(trial, state=TrialState.PRUNED)
            state, score, k = "stopped", study.trials[trial.number].intermediate_values[e.args[0]], e.args[0]
        except (UserError, Exception) as e:  # noqa: BLE001  one failed trial must not end the search
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            study.tell(trial, state=TrialState.FAIL)
            state, score, k = "failed", None, 0
            say(f"trial {trial.number} failed: {trial.user_attrs.get('error', e)}")
        say(trial_line(len(done) + 1, t.trials, trial.number, state, trial.params, score, k, horizon,
                       time.perf_counter() - t0))
    return [_optuna_trial(x) for x in counted()]


def _optuna_trial(x) -> dict:
    from optuna.trial import TrialState

    state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "stopped"}.get(x.state, "failed")
    steps = sorted(x.intermediate_values)
    score = x.value if state == "complete" else (x.intermediate_values[steps[-1]] if steps else None)
    return {"number": x.number, "params": x.params, "state": state, "score": score,
            "experiences": steps[-1] if steps else 0,
            "scores_by_experience": [x.intermediate_values[s] for s in steps],
            "seconds": x.user_attrs.get("seconds"), "error": x.user_attrs.get("error"),
            **({"rerun_of": x.user_attrs["rerun_of"]} if "rerun_of" in x.user_attrs else {})}
