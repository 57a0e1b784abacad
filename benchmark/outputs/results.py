"""One immutable folder per run: results/runs/<stream>/<strategy>/seed<k>/{config.json, matrix.csv, summary.json}.

The folder is built under a temporary name and renamed into place in one step, so a crash leaves no partial run
(only a hidden temporary folder, removed by the next claim, as are the lock files of a killed process). A run
counts as done only when its three files parse and agree (`run_problem`); one that does not (edited, copied in
part, truncated) is redone, and said so. A rerun with the same config skips; with a different config it refuses
(unless --force) rather than mixing results of two configs under one name. A process holds a lock on each run it
trains, so a second process on the same results (another batch) skips that run instead of training it twice.
"""

from __future__ import annotations

import contextlib
import csv
import errno
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
from typing import NamedTuple

import numpy as np

from benchmark.errors import UserError
from benchmark.outputs.metrics import cl_metrics
from benchmark.outputs.run_lock import (
    lock_run_folder,
    release_run_folder,
    remove_empty_folders,
    remove_stale_locks,
    remove_stale_temps,
)
from benchmark.registry import DEFAULT_MODEL

PACKAGES = ("torch", "torchvision", "avalanche-lib", "timm", "numpy", "pandas", "torchmetrics", "wandb", "hatswap")


def run_dir(out_dir: Path, stream: str, strategy: str, seed: int) -> Path:
    return Path(out_dir) / "runs" / stream / strategy / f"seed{seed}"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from e


def write_error(path: Path, e: OSError, flag: str = "--out-dir") -> UserError:
    """A full disk, a read-only folder, a file in the way: one line naming the path and the fix."""
    return UserError(f"cannot write {path}: {e.strerror or e}; {fix_for(e)} {flag}")


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, a quota reached


def fix_for(e: OSError) -> str:
    """The start of the fix for a failed write, the flag to follow."""
    return "free space there or pass another" if e.errno in DISK_FULL else "pass a writable"


def ensure_writable(out_dir: Path) -> None:
    """Fail before training, not after, when results cannot be written: a file in the way, a read-only folder or a
    full disk. The probe holds a byte: an empty file needs no free block, so it would pass on a full disk. Leaves
    nothing behind, not even the folders it made."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"cannot write results to {out_dir}: {out_dir} is a file, not a folder; pass another "
                        f"--out-dir")
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # deepest first
    probe = out_dir / f".write-test-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("x")
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        remove_empty_folders(made)
        raise UserError(f"cannot write results to {out_dir}: {e.strerror or e}; {fix_for(e)} --out-dir") from e


# Where results and data are, or how a run is logged, not what is computed: changing them never makes a finished
# run "different" (the data is identified by its files' sha256 instead; see _data_difference).
NOT_IDENTITY = frozenset({"wandb", "wandb_project", "wandb_entity", "wandb_group", "cache_dir", "out_dir",
                          "data_root", "checkpoint", "keep_checkpoints"})
# Config keys added after runs were first written, with the value those older runs implicitly had.
ADDED_LATER = {"optimizer": "adam", "lr_schedule": "constant", "pooling": "mean", "lr_step_size": 3, "lr_gamma": 0.1,
               "fresh_optimizer": False, "sampler": "shuffle", "published": "", "binary_tasks.head": "softmax",
               "activation": "relu", "grad_clip": 0.0, "task_lr": "", "mmoe.gate_layers": [],
               "cross-stitch.positions": [], "uncertainty.init_weights": "", "task_relations": "",
               "dtype": "float32", "scenario": "task-il", "tuned_from": "", "architecture": DEFAULT_MODEL,
               "save_model": False, "small_cnn.dropout": 0.0, "small_cnn.dropout_at": "each",
               "dense_suite.tasks": "segmentation,detection,classification",
               **{f"{stream}.{k}": v for stream in ("binary_tasks", "split_classes", "permuted", "rotated")
                  for k, v in (("eval_split", "test"), ("val_fraction", 0.1))}}
RUN_FILES = ("config.json", "matrix.csv", "summary.json")
# What every summary.json holds, whichever kind of run wrote it (continual: benchmark/harness/run.py; multi-task:
# benchmark/mtl/run.py, its own keys beside these). A score is a task's primary metric (named in `metric_units`);
# R = matrix.csv's rows after `init`; acc, bwt, forgetting, fwt: benchmark/outputs/metrics.py (None where undefined).
SUMMARY_KEYS = ("seed", "status", "tasks", "metric_units", "acc", "bwt", "forgetting", "fwt", "final", "just_trained",
                "untrained", "train_wall_s", "total_wall_s", "data_source", "device")
# The protocol a run's numbers were computed under, recorded in config.json. A run of an older protocol is not
# comparable with today's (same config, other numbers), so resume redoes it and the report leaves it out.
# 2 (2026-11-27): LwF sums its distillation over old heads (1: their mean); joint training is budget-matched (1:
# Avalanche's task-balanced loader, oversampling the first tasks); the cosine schedule restarts every experience
# (1: one cosine over all); COCO crowd regions are ignored (1: dropped); multi-task Δm uses the reconstruction MSE
# and single-task runs of the same trunk.
# 3 (2026-12-06): paired randomness (the data order, the global generator reseeded per experience and each
# strategy's own generator: benchmark/runtime/randomness.py); past heads frozen under EWC, SI and MAS (no zero
# gradients); SI's ω from the task's own gradient and Ω clipped at 0; LwF distils the training batch in any composition;
# GDumb trains its memory for its own epochs with SGDR; the dense suite's shared conv has no bias before its BatchNorm.
PROTOCOL = 3


class RunFiles(NamedTuple):
    """A run folder's three files, parsed."""

    record: dict  # config.json: {"config": flat config, "seed", "protocol", "git", "versions", "data", ...}
    matrix: tuple[list[str], list[str], list[list[float]]]  # matrix.csv: (task names, row labels, scores)
    summary: dict  # summary.json (SUMMARY_KEYS and the run kind's own)


def data_source(train_provenance: dict) -> str:
    """The summary's one-line data identity: source and the first 12 hex digits of its files' sha256."""
    sha = train_provenance.get("sha256")
    return f"{train_provenance.get('source', '?')}" + (f" (files sha256 {sha[:12]})" if sha else "")


def score_summary(rows: list[tuple[str, list[float]]], sequential: bool) -> dict:
    """The score keys of SUMMARY_KEYS from the evaluation rows [(label, score per task)], `init` first: acc, bwt,
    forgetting, fwt (for a run that did not train one task after another, one row per task: acc only), final =
    R[T−1], just_trained = R[j][j] (sequential runs; else None), untrained = the `init` row."""
    R = np.array([r for _, r in rows[1:]])
    metrics = cl_metrics(R, b=rows[0][1]) if sequential else cl_metrics(R[-1:])
    return metrics | {"final": R[-1].tolist(), "just_trained": np.diag(R).tolist() if sequential else None,
                      "untrained": list(rows[0][1])}


def run_problem(folder: Path) -> str:
    """'' when `folder` holds a complete run: config.json, matrix.csv and summary.json parse and agree (same tasks,
    one matrix row per evaluation point, same seed, the same final scores); else what is wrong with it."""
    return read_run(folder)[1]


def read_run(folder: Path) -> tuple[RunFiles | None, str]:
    """→ (its files, '') when `folder` holds a complete run (see run_problem), else (None, what is wrong): the one
    reading of a run folder that resume and the reports share."""
    parsed = []
    for name, parse in zip(RUN_FILES, (json.loads, parse_matrix, json.loads), strict=True):
        try:
            parsed.append(parse((Path(folder) / name).read_text()))
        except FileNotFoundError:
            return None, f"{name} missing"
        except (OSError, ValueError, IndexError) as e:  # json.JSONDecodeError is a ValueError
            return None, f"{name} unreadable ({type(e).__name__}: {str(e)[:80]})"
    files = RunFiles(*parsed)
    problem = _disagreement(files)
    return (None, problem) if problem else (files, "")


def _disagreement(files: RunFiles) -> str:
    record, (tasks, labels, scores), summary = files
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return "config.json holds no config"
    if (protocol := record.get("protocol", 1)) != PROTOCOL:
        return f"computed under protocol {protocol}, not {PROTOCOL} (benchmark/outputs/results.py says what changed)"
    if not isinstance(summary, dict):
        return "summary.json holds no object"
    if summary.get("tasks") != tasks:
        return f"tasks differ: matrix.csv {tasks}, summary.json {summary.get('tasks')}"
    for key in ("eval_loss", "evaluations"):  # one entry per evaluation point, like the matrix's rows
        if isinstance(summary.get(key), dict) and list(summary[key]) != labels:
            return f"matrix.csv has {len(labels)} evaluation rows, summary.json {len(summary[key])} ({key})"
    if summary.get("seed", record["config"].get("seed")) != record["config"].get("seed"):
        return f"seeds differ: config.json {record['config'].get('seed')}, summary.json {summary.get('seed')}"
    final = summary.get("final")  # R[T-1] in full precision (multi-task runs of before SUMMARY_KEYS: a dict)
    if isinstance(final, list) and not (len(final) == len(tasks) and np.allclose(
            np.asarray(final, dtype=float), scores[-1], rtol=0, atol=1e-5, equal_nan=True)):
        return "final scores differ between matrix.csv and summary.json"
    return ""


def existing_status(folder: Path, config: dict) -> tuple[str, str]:
    """→ ('absent', ''), ('incomplete', what is wrong), ('same', '') or ('different', 'key: old → new, ...')."""
    if not Path(folder).exists():
        return "absent", ""
    files, problem = read_run(folder)
    if problem:
        return "incomplete", problem
    record = files.record
    old = {k: v for k, v in ADDED_LATER.items() if k in config} | record["config"]  # older runs had these implicitly
    keys = sorted((set(old) | set(config)) - NOT_IDENTITY)
    diff = [f"{k}: {_shown(old, k)} → {_shown(config, k)}" for k in keys if old.get(k, ...) != config.get(k, ...)]
    if not diff and (data := _data_difference(record, config)):
        diff.append(data)
    return ("different", ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")) if diff \
        else ("same", "")


def different_config(folder: Path, detail: str, elsewhere: str = "another --out-dir") -> UserError:
    return UserError(f"{folder} holds results of a different config ({detail}); pass --force to replace them, or "
                     f"{elsewhere}")


def _shown(config: dict, key: str) -> str:
    return json.dumps(config[key], default=str) if key in config else "(absent)"


def _data_difference(record: dict, config: dict) -> str:
    """'' when the new config reads the data the recorded run read: the same data_root, or another one (a copy, or
    the same folder spelled otherwise) whose files have the recorded sha256; else how they differ."""
    old_root, new_root = record["config"].get("data_root"), config.get("data_root")
    if old_root == new_root or Path(str(old_root)).resolve() == Path(str(new_root)).resolve():
        return ""
    recorded = ((record.get("data") or {}).get("train") or {}).get("sha256")
    found = _data_sha256(config)
    if recorded and recorded == found:
        return ""
    if recorded and found:
        return f"data sha256: {recorded[:12]} → {found[:12]} (data_root {old_root} → {new_root})"
    return f"data_root: {json.dumps(old_root)} → {json.dumps(new_root)} (its data files could not be compared)"


def _data_sha256(config: dict) -> str | None:
    """sha256 of the training files the config's source (the `<stream>.source` key) would read from its data_root,
    found offline; None when there is no such source or its files are not there."""
    from benchmark.registry import SOURCES

    sources = [v for k, v in config.items() if k.endswith(".source") and v in SOURCES.names()]
    if len(sources) != 1:
        return None
    try:
        data = SOURCES.get(sources[0]).build(Path(config["data_root"]), train=True, download=False, apt_install=False)
    except (UserError, OSError, RuntimeError):
        return None
    return data.provenance.get("sha256")


_SKIPPED: dict[Path, str] = {}  # run folder → why claim_run_folder said to skip it


def skip_reason(folder: Path) -> str:
    """Why the last claim of `folder` was refused: 'done' (its results exist) or 'running in another process …'."""
    return _SKIPPED.get(Path(folder), "done")


def in_claimed_folder(folder: Path, config: dict, out_dir: Path, force: bool, train,
                      elsewhere: str = "another --out-dir") -> tuple[Path, str]:
    """One run's frame, for every kind of run: claim `folder` (claim_run_folder), then train() → (folder, 'done'),
    giving the folder back also when training fails (write_run gives it back on success); → (folder, 'skipped')
    when it must not run here."""
    if not claim_run_folder(folder, config, out_dir, force, elsewhere=elsewhere):
        return folder, "skipped"
    try:
        return train()
    finally:
        release_run_folder(folder)


def claim_run_folder(folder: Path, config: dict, out_dir: Path, force: bool,
                     elsewhere: str = "another --out-dir") -> bool:
    """Before a run: False if it must be skipped (`folder` holds this config's results, or another live process is
    running it: see skip_reason), True if this process must run it, and now holds it until write_run (or exit).
    Refuses, without --force, a folder holding another config's results, and an out_dir it cannot write to; an
    incomplete folder is redone, and said so."""
    folder = Path(folder)
    for locked in (False, True):  # check, lock, check again: another process may have finished it meanwhile
        status, detail = existing_status(folder, config)
        if status in ("same", "different") and not force:
            release_run_folder(folder)
            if status == "different":
                raise different_config(folder, detail, elsewhere)
            _SKIPPED[folder] = "done"
            return False
        if locked:
            break
        ensure_writable(out_dir)
        if holder := lock_folder(folder):
            _SKIPPED[folder] = f"running in another process (pid {holder})"
            return False
    remove_stale_temps(folder)
    remove_stale_locks(folder.parent)  # the other seeds' (a killed batch's), as the lock of this one is reused
    if status == "incomplete":
        print(f"[run] {folder} is incomplete ({detail}); redoing it", file=sys.stderr)
    return True


def lock_folder(folder: Path) -> str:
    """lock_run_folder; a disk that filled (or turned read-only) since ensure_writable is one line naming the folder."""
    try:
        return lock_run_folder(folder)
    except OSError as e:
        raise write_error(folder, e) from e


def git_state() -> dict:
    root = Path(__file__).resolve().parents[2]  # the checkout holding the package (benchmark/outputs/results.py)
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
    return parse_matrix(Path(path).read_text())


def parse_matrix(text: str) -> tuple[list[str], list[str], list[list[float]]]:
    """matrix.csv's text → (task names, row labels, scores); ValueError unless every row has a label and one number
    per task under an `eval_point` header."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:1] != ["eval_point"] or len(rows) < 2:
        raise ValueError("no eval_point header and rows")
    if bad := [r for r in rows[1:] if len(r) != len(rows[0])]:
        raise ValueError(f"a row of {len(bad[0])} cells under a header of {len(rows[0])}")
    return rows[0][1:], [r[0] for r in rows[1:]], [[float(v) for v in r[1:]] for r in rows[1:]]


def write_run(folder: Path, config_record: dict, matrix: str, summary: dict, force: bool = False,
              fill=None) -> Path:
    """Write the run folder in one step; `fill(tmp_folder)` adds further files (figures) before the rename. A
    complete folder that appeared meanwhile is kept if it holds the same config (another process won the race
    to the same result), refused if another (unless force). Releases this process's claim on the folder."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{time.time_ns()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        (tmp / "config.json").write_text(json.dumps(config_record, indent=2, default=str) + "\n")  # the folder's
        (tmp / "matrix.csv").write_text(matrix)  # rename below is the atomic step
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if fill is not None:
            fill(tmp)
        if folder.exists():
            status, detail = existing_status(folder, config_record["config"])
            if status == "same" and not force:
                return folder
            if status == "different" and not force:
                raise different_config(folder, detail)
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except OSError as e:
        raise write_error(folder, e) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        release_run_folder(folder)
    return folder


def config_record(cfg_dict: dict, provenance: dict, backbone: dict, device: str) -> dict:
    return {"config": cfg_dict, "seed": cfg_dict["seed"], "protocol": PROTOCOL, "git": git_state(),
            "versions": package_versions(),
            "data": provenance, "backbone": backbone, "device": device, "argv": sys.argv,
            "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
