"""One immutable folder per run: results/runs/<stream>/<strategy>/seed<k>/{config.json, matrix.csv, summary.json}.

The folder is built under a temporary name and renamed into place in one step, so a crash leaves no partial run
and `summary.json` existing means the run is complete. A rerun with the same config skips; with a different config
it refuses (unless --force) rather than mixing results of two configs under one name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from benchmark.errors import UserError

PACKAGES = ("torch", "torchvision", "avalanche-lib", "timm", "numpy", "pandas", "torchmetrics", "wandb", "hatswap")


def run_dir(out_dir: Path, stream: str, strategy: str, seed: int) -> Path:
    return Path(out_dir) / "runs" / stream / strategy / f"seed{seed}"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def ensure_writable(out_dir: Path) -> None:
    """Fail before training, not after, when results cannot be written."""
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(out_dir) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write results to {out_dir}: {e.strerror or e}; pass a writable --out-dir") from None


# Where results are logged or shown, not what is computed: changing them never makes a finished run "different".
NOT_IDENTITY = frozenset({"wandb", "wandb_project", "wandb_entity", "cache_dir"})
# Config keys added after runs were first written, with the value those older runs implicitly had.
ADDED_LATER = {"optimizer": "adam", "lr_schedule": "constant"}


def existing_status(folder: Path, config: dict) -> str:
    """'absent' | 'same' (complete, same config) | 'different' (complete, another config)."""
    if not (folder / "summary.json").is_file():
        return "absent"
    try:
        old = json.loads((folder / "config.json").read_text())["config"]
    except (OSError, KeyError, json.JSONDecodeError):
        return "different"
    old = {k: v for k, v in ADDED_LATER.items() if k in config} | old  # older runs had these values implicitly
    same = {k: v for k, v in old.items() if k not in NOT_IDENTITY} == \
        {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    return "same" if same else "different"


def claim_run_folder(folder: Path, config: dict, out_dir: Path, force: bool,
                     elsewhere: str = "another --out-dir") -> bool:
    """Before a run: False if `folder` already holds this config's results (skip it), True if the run must go ahead.
    Refuses, without --force, a folder holding another config's results, and an out_dir it cannot write to."""
    status = existing_status(folder, config)
    if status == "same" and not force:
        return False
    if status == "different" and not force:
        raise UserError(f"{folder} holds results of a different config; pass --force to replace them, or {elsewhere}")
    ensure_writable(out_dir)
    return True


def git_state() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if sha.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def matrix_csv(task_names: list[str], rows: list[tuple[str, list[float]]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["eval_point", *task_names])
    for label, scores in rows:
        w.writerow([label, *(f"{s:.6f}" for s in scores)])
    return buf.getvalue()


def read_matrix(path: Path) -> tuple[list[str], list[str], list[list[float]]]:
    """→ (task names, row labels, scores)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0][1:], [r[0] for r in rows[1:]], [[float(v) for v in r[1:]] for r in rows[1:]]


def write_run(folder: Path, config_record: dict, matrix: str, summary: dict, force: bool = False,
              fill=None) -> Path:
    """Write the run folder in one step; `fill(tmp_folder)` adds further files (figures) before the rename."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir()
    try:
        atomic_write(tmp / "config.json", json.dumps(config_record, indent=2, default=str) + "\n")
        atomic_write(tmp / "matrix.csv", matrix)
        atomic_write(tmp / "summary.json", json.dumps(summary, indent=2) + "\n")
        if fill is not None:
            fill(tmp)
        if folder.exists():
            if not force and (folder / "summary.json").is_file():
                raise UserError(f"results already exist in {folder}; pass --force to replace them")
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def config_record(cfg_dict: dict, provenance: dict, backbone: dict, device: str) -> dict:
    return {"config": cfg_dict, "seed": cfg_dict["seed"], "git": git_state(), "versions": package_versions(),
            "data": provenance, "backbone": backbone, "device": device, "argv": sys.argv,
            "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
