"""Batch benchmarking: every (stream, strategy, seed) of a profile, in one process (imports and data load once).

Completed runs (their files complete and agreeing, same config) are skipped, so a rerun resumes; so are runs that
another process (a second batch on the same results) is training. A failed run is reported and the batch goes on;
at the end the aggregate report is rebuilt and failures are listed (exit code 1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

from benchmark.config import _owner, load_profile, parse_config
from benchmark.errors import UserError
from benchmark.executors import LocalExecutor
from benchmark.report import write_report
from benchmark.results import atomic_write, ensure_writable


def _duration(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def plan(profile: dict, streams=None, strategies=None, seeds=None) -> list[tuple[str, str, int]]:
    return [(st, sg, sd) for st in streams or profile["streams"] for sg in strategies or profile["strategies"]
            for sd in (seeds if seeds is not None else profile["seeds"])]


def args_for_run(run_args: list[str], stream: str, strategy: str, todo) -> list[str]:
    """run_args without the knobs of the batch's other streams / strategies: `./run_all.sh --lwf.alpha 2` sets lwf's
    alpha for the lwf runs and leaves naive's alone (as a profile's `lwf.alpha` does). A knob of a stream or strategy
    the batch does not run at all is an error naming what the batch runs."""
    ran = {"stream": {st for st, _, _ in todo}, "strategy": {sg for _, sg, _ in todo}}
    this = {"stream": stream, "strategy": strategy}
    out, skip_value = [], False
    for i, arg in enumerate(run_args):
        if skip_value:
            skip_value = False
            continue
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        owner = _owner(name.removeprefix("no-")) if name else None
        if owner and owner[0] in this and owner[1] != this[owner[0]]:
            kind, entry = owner
            if entry not in ran[kind]:
                raise UserError(f"--{name} belongs to {kind} {entry}, which this batch does not run (its "
                                f"{kind}s: {', '.join(sorted(ran[kind]))}); add it with --{kind}s or drop the flag")
            # the flag's value is the next argument unless given as --flag=value (run flags have no positionals)
            skip_value = "=" not in arg and i + 1 < len(run_args) and not run_args[i + 1].startswith("--")
            continue
        out.append(arg)
    return out


def run_batch(profile_name: str, run_args: list[str], streams=None, strategies=None, seeds=None, force=False,
              debug=False, executor=None) -> int:
    """executor: LocalExecutor (default: one run after another in this process) or benchmark.ray_executor's."""
    profile = load_profile(profile_name)
    if profile.get("kind") == "mtl":  # multi-task profiles have their own runner (benchmark/mtl/batch.py)
        from benchmark.mtl.batch import run_mtl_batch

        if streams or strategies or executor:
            raise UserError(f"profile {profile_name!r} is a multi-task profile: --streams/--strategies/--executor do "
                            f"not apply (its experiments run one after another in this process)")
        return run_mtl_batch(profile_name, profile, run_args, seeds=seeds, force=force, debug=debug)
    todo = plan(profile, streams, strategies, seeds)
    if not todo:
        raise UserError(f"profile {profile_name!r} with these --streams/--strategies/--seeds has no runs")
    configs = []
    for stream, strategy, seed in todo:  # parse all first: a bad flag stops the batch before any training
        cfg, _ = parse_config(["--profile", profile_name, "--stream", stream, "--strategy", strategy,
                               "--seed", str(seed), *args_for_run(run_args, stream, strategy, todo)])
        configs.append(cfg)
    from benchmark.models.pretrained_weights import check_weights_available

    for backbone, weights in dict.fromkeys((c.backbone, c.backbone_weights) for c in configs):
        check_weights_available(backbone, weights)  # missing weights would fail every run alike: stop before any
    out_dir = configs[0].out_dir
    ensure_writable(out_dir)  # an --out-dir that is a file would fail every run, then the report
    executor = executor or LocalExecutor()
    executor.start()  # Ray: start or join it now, so the line below says how many runs go at once
    print(f"[batch] profile {profile_name}: {len(todo)} runs → {Path(out_dir) / 'runs'} ({executor.describe()})",
          file=sys.stderr)
    failed, trained_s, n_trained, t0 = [], 0.0, 0, time.perf_counter()
    # One bar for the batch on a terminal; elsewhere (CI, a log file) only the one-line-per-run report below.
    bar = tqdm(total=len(configs), desc=f"batch {profile_name}", unit="run", file=sys.stderr, dynamic_ncols=True,
               disable=not sys.stderr.isatty())
    for k, (cfg, outcome) in enumerate(executor.map(configs, force=force, debug=debug), 1):
        tag = f"{cfg.stream}/{cfg.strategy}/seed{cfg.seed}"
        status = outcome.status
        if outcome.error:
            failed.append(f"{tag}: {outcome.error}")
            tqdm.write(f"[batch] {tag} failed: {outcome.error}", file=sys.stderr)
        if status == "done":
            trained_s, n_trained = trained_s + outcome.seconds, n_trained + 1
        left = len(configs) - k
        # runs in parallel finish about `parallel` at a time: the ETA divides by it
        eta = _duration(trained_s / n_trained * left / executor.parallel) if n_trained else "?"
        tqdm.write(f"[batch {k}/{len(configs)}] {tag}: {status} in {outcome.seconds:.0f}s · elapsed "
                   f"{_duration(time.perf_counter() - t0)} · ETA {eta if left else '0m00s'}", file=sys.stderr)
        bar.update(1)
    bar.close()

    failed_file = Path(out_dir) / "failed_runs.txt"
    if failed:
        atomic_write(failed_file, "\n".join(failed) + "\n")
    elif failed_file.exists():
        failed_file.unlink()
    table = write_report(out_dir, failed)
    print(table)
    what = "tables: summary.md/.csv/.tex, per_task.*; figures/" if (Path(out_dir) / "summary.csv").is_file() else \
        "no completed runs: no tables or figures"
    print(f"[batch] wrote {Path(out_dir) / 'REPORT.md'} ({what}) in {_duration(time.perf_counter() - t0)}",
          file=sys.stderr)
    if failed:
        print(f"[batch] {len(failed)} run(s) failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
