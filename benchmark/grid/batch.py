"""Batch benchmarking: every run of a profile, one after another in one process (imports and data load once) or as
Ray tasks (benchmark/grid/executors.py).

One runner for every kind of batch: plan (every config parsed first: a bad flag stops the batch before any
training) → execute, skipping completed runs (their files complete and agreeing, same config), so a rerun resumes,
and runs another process is training → list the failures (failed_runs.txt; exit code 1), the batch going on past
each → rebuild the report once. A profile's `"kind"` names its GridKind, which says how the profile becomes configs,
how one config runs and what its report is: `cl` (the default: every stream × strategy × seed, below) or `mtl`
(every experiment × seed of a multi-task profile), which benchmark/mtl/batch.py registers. The core never imports
benchmark.mtl: the entry point (benchmark/cli.py) does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmark.config import knob_owner, load_profile, parse_config, profile_path
from benchmark.errors import UserError
from benchmark.grid.executors import LocalExecutor
from benchmark.outputs.report import write_report
from benchmark.outputs.results import atomic_write, ensure_writable
from benchmark.registry import STRATEGIES, STREAMS


def _no_check(configs: list) -> None:
    pass


def _no_check_after(profile_name: str, configs: list) -> None:
    pass


@dataclass(frozen=True)
class GridKind:
    """One kind of batch (a profile's `"kind"`). Planned runs are (group, config) pairs; a config has `out_dir`."""

    plan: Callable[..., list[tuple[str, Any]]]  # (profile name, profile, run args, seeds, selection) → planned runs
    run: Callable[..., tuple[Path, str]]  # (config, force=) → (folder, status); module level, as Ray pickles it
    tag: Callable[[Any], str]  # config → its name in progress lines and the failure list
    home: Callable[[Path], Path]  # out_dir → the folder holding its runs/, failed_runs.txt and report
    # (out_dir, failures, planned runs or None (a rebuild), report folder or None) → (table for stdout, what it wrote)
    report: Callable[..., tuple[str, str]]
    noun: str = "run"  # what the progress lines call one planned run
    label: str = ""  # before "profile" in the batch's first line ("mtl "), empty for the continual kind
    check: Callable[[list], None] = _no_check  # before any training: what would fail every run alike
    after_report: Callable[[str, list], None] = _no_check_after  # (profile name, configs): e.g. wandb's summary run


GRID_KINDS: dict[str, GridKind] = {}


def register_grid_kind(name: str, kind: GridKind) -> None:
    if name in GRID_KINDS:
        raise KeyError(f"grid kind {name!r} already registered")
    GRID_KINDS[name] = kind


# A profile section that a package built on the core turns into the runs' backbone weights before they are planned
# ("pretrain": its DINO pretraining, registered by benchmark/pretrain/batch.py). The package registers itself and the
# composition root (benchmark/cli.py) loads it, so the grid runner never imports the packages built on it.
WEIGHTS_STEPS: dict[str, Callable[[str, Any], Path]] = {}


def register_weights_step(section: str, weights_for: Callable[[str, Any], Path]) -> None:
    """weights_for(profile name, a planned run's config) → the weights file every run of the profile loads."""
    if section in WEIGHTS_STEPS:
        raise KeyError(f"profile section {section!r} already has a weights step")
    WEIGHTS_STEPS[section] = weights_for


def weights_step(section: str) -> Callable[[str, Any], Path]:
    if section not in WEIGHTS_STEPS:
        raise UserError(f"the profile's {section!r} section has no step here (run it with `hatswap batch`, which "
                        f"loads every step)")
    return WEIGHTS_STEPS[section]


def grid_kind(name: str) -> GridKind:
    if name not in GRID_KINDS:
        raise UserError(f"profile kind {name!r} has no batch runner here; known: {', '.join(sorted(GRID_KINDS))} "
                        f"(run it with `hatswap batch`, which loads every kind)")
    return GRID_KINDS[name]


def _duration(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def run_batch(profile_name: str, run_args: list[str], streams=None, strategies=None, seeds=None, force=False,
              debug=False, executor=None) -> int:
    """Every run of benchmark/profiles/<profile_name>.json; streams / strategies select among a continual profile's."""
    return run_grid(profile_name, load_profile(profile_name), run_args, seeds=seeds, force=force, debug=debug,
                    executor=executor, selection={"streams": streams, "strategies": strategies})


def run_grid(profile_name: str, profile: dict, run_args: list[str], seeds=None, selection=None, force=False,
             debug=False, executor=None) -> int:
    """executor: LocalExecutor (default: one run after another in this process) or RayExecutor. → exit code."""
    kind_name = profile.get("kind", "cl")
    kind = grid_kind(kind_name)
    planned = kind.plan(profile_name, profile, run_args, seeds, selection or {})
    configs = [cfg for _, cfg in planned]
    kind.check(configs)
    out_dir = configs[0].out_dir
    ensure_writable(out_dir)  # an --out-dir that is a file would fail every run, then the report
    executor = executor or LocalExecutor()
    executor.start()  # Ray: start or join it now, so the line below says how many runs go at once
    home, t0 = kind.home(out_dir), time.perf_counter()
    print(f"[batch] {kind.label}profile {profile_name}: {len(configs)} "
          f"{kind.noun}s → {home / 'runs'} ({executor.describe()})", file=sys.stderr)
    failed = _execute(kind, configs, executor, force, debug, f"batch {profile_name}")
    failed_file = home / "failed_runs.txt"
    if failed:
        atomic_write(failed_file, "\n".join(failed) + "\n")
    elif failed_file.exists():
        failed_file.unlink()
    table, wrote = kind.report(out_dir, failed, planned, None)
    print(table)
    kind.after_report(profile_name, configs)
    print(f"[batch] wrote {wrote} in {_duration(time.perf_counter() - t0)}", file=sys.stderr)
    if failed:
        print(f"[batch] {len(failed)} {kind.noun}(s) failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _execute(kind: GridKind, configs: list, executor, force: bool, debug: bool, desc: str) -> list[str]:
    """Every config through the executor, one progress line each; → the failures, one line each."""
    failed, trained_s, n_trained, t0 = [], 0.0, 0, time.perf_counter()
    # One bar for the batch on a terminal; elsewhere (CI, a log file) only the one-line-per-run report below.
    bar = tqdm(total=len(configs), desc=desc, unit=kind.noun, file=sys.stderr, dynamic_ncols=True,
               disable=not sys.stderr.isatty())
    for k, (cfg, outcome) in enumerate(executor.map(kind.run, configs, force=force, debug=debug), 1):
        tag = kind.tag(cfg)
        if outcome.error:
            failed.append(f"{tag}: {outcome.error}")
            tqdm.write(f"[batch] {tag} failed: {outcome.error}", file=sys.stderr)
        if outcome.status == "done":
            trained_s, n_trained = trained_s + outcome.seconds, n_trained + 1
        left = len(configs) - k
        # runs in parallel finish about `parallel` at a time: the ETA divides by it
        eta = _duration(trained_s / n_trained * left / executor.parallel) if n_trained else "?"
        tqdm.write(f"[batch {k}/{len(configs)}] {tag}: {outcome.status} in {outcome.seconds:.0f}s · elapsed "
                   f"{_duration(time.perf_counter() - t0)} · ETA {eta if left else '0m00s'}", file=sys.stderr)
        bar.update(1)
    bar.close()
    return failed


def rebuild_reports(results_dir: Path, out_dir: Path | None = None) -> list[str]:
    """`hatswap report`: every kind's report over the run folders under results_dir (with the failures its last
    batch listed), written into out_dir (default: results_dir); → each report's table."""
    found = [kind for kind in GRID_KINDS.values() if (kind.home(results_dir) / "runs").is_dir()]
    if not found:
        homes = " or ".join(str(kind.home(results_dir) / "runs") for kind in GRID_KINDS.values())
        raise UserError(f"no run folders in {homes}; pass the results directory that holds runs/")
    tables = []
    for kind in found:
        failed_file = kind.home(results_dir) / "failed_runs.txt"
        failed = failed_file.read_text().splitlines() if failed_file.exists() else []
        tables.append(kind.report(results_dir, failed, None, out_dir)[0])
    return tables


# The continual kind: every (stream, strategy, seed) of a profile.

def plan(profile: dict, streams=None, strategies=None, seeds=None) -> list[tuple[str, str, int]]:
    return [(st, sg, sd) for st in streams or profile["streams"] for sg in strategies or profile["strategies"]
            for sd in (seeds if seeds is not None else profile["seeds"])]


def args_for_run(run_args: list[str], stream: str, strategy: str, todo) -> list[str]:
    """run_args without the knobs of the batch's other streams / strategies: `./run_all.sh --lwf.alpha 2` sets lwf's
    alpha for the lwf runs and leaves naive's alone (as a profile's `lwf.alpha` does). A knob of a stream or strategy
    the batch does not run at all is an error naming what the batch runs."""
    ran = {"stream": {st for st, _, _ in todo}, "strategy": {part for _, sg, _ in todo for part in sg.split("+")}}
    this = {"stream": {stream}, "strategy": set(strategy.split("+"))}  # a combination takes each part's knobs
    out, skip_value = [], False
    for i, arg in enumerate(run_args):
        if skip_value:
            skip_value = False
            continue
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        owner = knob_owner(name.removeprefix("no-")) if name else None
        if owner and owner[0] in this and owner[1] not in this[owner[0]]:
            kind, entry = owner
            if entry not in ran[kind]:
                raise UserError(f"--{name} belongs to {kind} {entry}, which this batch does not run (its "
                                f"{kind}s: {', '.join(sorted(ran[kind]))}); add it with --{kind}s or drop the flag")
            # the flag's value is the next argument unless given as --flag=value (run flags have no positionals)
            skip_value = "=" not in arg and i + 1 < len(run_args) and not run_args[i + 1].startswith("--")
            continue
        out.append(arg)
    return out


def check_names(profile_name: str, profile: dict, selection: dict) -> None:
    """Every stream and strategy the batch will run exists; an unknown one is blamed on where it came from: the
    profile's list (naming the file) or --streams / --strategies, never on `--strategy`."""
    for key, registry in (("streams", STREAMS), ("strategies", STRATEGIES)):
        for name in selection.get(key) or profile.get(key, []):
            try:
                registry.get(name)
            except UserError as e:
                where = f"--{key}" if selection.get(key) else \
                    f"the \"{key}\" list of profile {profile_name} ({profile_path(profile_name)})"
                raise UserError(f"{e} (in {where})") from None


def _plan_runs(profile_name: str, profile: dict, run_args: list[str], seeds, selection: dict) -> list[tuple[str, Any]]:
    check_names(profile_name, profile, selection)
    todo = plan(profile, selection.get("streams"), selection.get("strategies"), seeds)
    if not todo:
        raise UserError(f"profile {profile_name!r} with these --streams/--strategies/--seeds has no runs")
    planned = [("", parse_config(["--profile", profile_name, "--stream", stream, "--strategy", strategy, "--seed",
                                  str(seed), *args_for_run(run_args, stream, strategy, todo)])[0])
               for stream, strategy, seed in todo]
    if "pretrain" in profile and not planned[0][1].backbone_weights:
        # The profile's backbone comes from its own pretraining (benchmark/pretrain/; a cache hit once done);
        # --backbone-weights FILE on the command line uses that file instead.
        weights = weights_step("pretrain")(profile_name, planned[0][1])
        return _plan_runs(profile_name, profile, [*run_args, "--backbone-weights", str(weights)], seeds, selection)
    return planned


def _check_weights(configs: list) -> None:
    from benchmark.models.pretrained_weights import check_weights_available

    for backbone, weights in dict.fromkeys((c.backbone, c.backbone_weights) for c in configs):
        check_weights_available(backbone, weights)  # missing weights would fail every run alike: stop before any


def run_one(cfg, force: bool = False) -> tuple[Path, str]:
    """One continual run (benchmark.harness.run.run), imported when a run starts: planning a batch needs no torch."""
    from benchmark.harness.run import run

    return run(cfg, force=force)


def _report(out_dir: Path, failed: list[str], planned, report_dir: Path | None = None) -> tuple[str, str]:
    table = write_report(out_dir, failed, out_dir=report_dir)
    where = Path(report_dir or out_dir)
    what = "tables: summary.md/.csv/.tex, per_task.*; figures/" if (where / "summary.csv").is_file() else \
        "no completed runs: no tables or figures"
    return table, f"{where / 'REPORT.md'} ({what})"


def _wandb_summary(profile_name: str, configs: list) -> None:
    """With --wandb offline/online: one summary run for the batch (benchmark.outputs.tracking.log_batch_summary)."""
    cfg = configs[0]
    if cfg.wandb == "off" or not (Path(cfg.out_dir) / "summary.csv").is_file():
        return
    from benchmark.outputs.tracking import log_batch_summary

    info = log_batch_summary(cfg.wandb, project=cfg.wandb_project, entity=cfg.wandb_entity, out_dir=cfg.out_dir,
                             profile=profile_name, report_dir=cfg.out_dir)
    print(f"[batch] wandb summary run: {info.get('id', info.get('error', info['mode']))}", file=sys.stderr)


def _tag(c) -> str:
    from benchmark.harness.scenarios import stream_label

    return f"{stream_label(c.stream, c.scenario, c.architecture)}/{c.strategy}/seed{c.seed}"


register_grid_kind("cl", GridKind(plan=_plan_runs, run=run_one, tag=_tag, home=Path, report=_report,
                                  check=_check_weights, after_report=_wandb_summary))
