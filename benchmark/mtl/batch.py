"""`hatswap batch --profile mtl`: every experiment × seed of an MTL profile (`"kind": "mtl"` in its JSON).

A profile: {"kind": "mtl", "seeds": [...], "config": {shared flags}, "experiments": [{"name": ..., "group": ...,
<flags>}, ...]}. An experiment with a single task is that task's single-task baseline (STL) for Δm. Completed
experiments (summary.json, same config) are skipped, so a rerun resumes; a failed one is listed and the batch goes
on; at the end the report is rebuilt (results/mtl/summary.{md,csv}, val_curves.png) and failures exit 1.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from benchmark.errors import RunFailed, UserError
from benchmark.mtl.config import parse_mtl_config
from benchmark.results import atomic_write

META_KEYS = ("group",)  # experiment keys that describe, not configure


def plan(profile: dict, run_args: list[str], seeds=None) -> list:
    if not profile.get("experiments"):
        raise UserError("an mtl profile needs a non-empty \"experiments\" list")
    names = [e.get("name") for e in profile["experiments"]]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise UserError(f"every experiment of an mtl profile needs a distinct \"name\"; got {names}")
    configs = []
    for exp in profile["experiments"]:
        for seed in seeds if seeds is not None else profile.get("seeds", [0]):
            defaults = profile.get("config", {}) | {k: v for k, v in exp.items() if k not in META_KEYS}
            cfg, _ = parse_mtl_config(run_args, defaults=defaults | {"seed": seed})
            configs.append((exp.get("group", ""), cfg))
    return configs


def run_mtl_batch(profile_name: str, profile: dict, run_args: list[str], seeds=None, force=False,
                  debug=False) -> int:
    from benchmark.mtl.report import write_mtl_report
    from benchmark.mtl.run import run_mtl

    configs = plan(profile, run_args, seeds)  # every config parsed first: a bad flag stops before any training
    out_dir = configs[0][1].out_dir
    print(f"[batch] mtl profile {profile_name}: {len(configs)} experiments → {Path(out_dir) / 'mtl' / 'runs'}",
          file=sys.stderr)
    failed, t0 = [], time.perf_counter()
    for k, (_, cfg) in enumerate(configs, 1):
        tag = f"{cfg.run_name}/seed{cfg.seed}"
        t_run = time.perf_counter()
        try:
            _, status = run_mtl(cfg, force=force)
        except (UserError, RunFailed) as e:
            failed.append(f"{tag}: {e}")
            status = "FAILED"
        except Exception as e:  # one broken experiment must not cost the others
            failed.append(f"{tag}: {type(e).__name__}: {e}")
            status = "FAILED"
            if debug:
                traceback.print_exc()
        print(f"[batch {k}/{len(configs)}] {tag}: {status} in {time.perf_counter() - t_run:.0f}s · elapsed "
              f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
    failed_file = Path(out_dir) / "mtl" / "failed_runs.txt"
    if failed:
        atomic_write(failed_file, "\n".join(failed) + "\n")
    elif failed_file.exists():
        failed_file.unlink()
    groups = {cfg.run_name: group for group, cfg in configs}
    print(write_mtl_report(out_dir, groups, failed))
    print(f"[batch] mtl profile {profile_name} done in {time.perf_counter() - t0:.0f}s; report in "
          f"{Path(out_dir) / 'mtl' / 'summary.md'}", file=sys.stderr)
    if failed:
        print(f"[batch] {len(failed)} experiment(s) failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
