"""The committed golden files (tests/golden/) and the one check every golden test uses: the same text, every number
within a relative tolerance of the committed one.

Why a tolerance, and why float64. The same code gives the same numbers on the same kind of CPU, but not across CPU
kinds (or across the kernels torch picks: ATEN_CPU_CAPABILITY=default | avx2 | avx512): their matrix and convolution
kernels sum in other orders, and a few training steps amplify float32's last bit to the third decimal of R (the
dense suite's mIoU moved by 3e-3 between two machines). So every golden fixture trains in float64 (`--dtype
float64`, one thread, `torch.use_deterministic_algorithms`), where the same amplification stays near 1e-12, and
a check compares each number with the committed one within RTOL (relative; ATOL near 0):

    measured (scripts/golden_spread.sh, 2026-12-06, a 2-core AMD EPYC with AVX-512, all 301 golden checks):
    between ATen's kernels (ATEN_CPU_CAPABILITY unset, =avx2, =default) and MKL's (MKL_CBWR=COMPATIBLE, its generic
    branch) the largest relative difference of any number is 5.9e-13 (a multi-task fixture; GDumb's binary-task run
    3e-13, every other continual one 1.3e-14 or less). A learning rate 0.1 % larger changes naive's numbers by
    6.5e-6 relative at the least (the smallest nonzero change of any number on either stream; median 1e-4 to 3e-3)
    and fails the check (tests/test_golden_files.py). RTOL = 1e-7 sits five orders above the first and 65 times
    below the second. In float32 the same spread reached 3e-3 (the dense suite's R on two machines). Not measured:
    another CPU vendor's chip (an Intel with AMX, where MKL takes other kernels); the margin is the five orders.

A change of structure (moving code, renaming) must reproduce the numbers to the last digit on the same machine:
`scripts/golden_bitexact.sh BASE` runs the golden fixtures at BASE and at HEAD and compares every number byte for
byte (HATSWAP_GOLDEN_DUMP=DIR makes each check write the text it checked to DIR/<name>).

Writing: HATSWAP_WRITE_GOLDEN=1 rewrites the files of the checks that run (a deliberate behaviour change, said in
its commit: what moved and why)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "golden"
RTOL = 1e-7  # relative; see the module docstring for the measured spread and learning-rate effect it sits between
ATOL = 1e-10  # for numbers that are (nearly) 0, where a relative bound means nothing
# a number standing alone (not the digit of a name such as after_exp0 or t1_det): decimal, exponent, inf or nan
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|inf|nan)(?![\w.])")


def split_numbers(text: str) -> tuple[str, list[float]]:
    """→ (the text with every number replaced by '#', the numbers in order)."""
    return NUMBER.sub("#", text), [float(m) for m in NUMBER.findall(text)]


def close(a: float, b: float, rtol: float = RTOL, atol: float = ATOL) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def largest_difference(text: str, golden: str) -> tuple[float, str] | None:
    """None when the texts differ in anything but numbers (or in how many); else (the largest relative difference
    of their numbers, the first pair whose difference is not `close`, or '')."""
    (skeleton, xs), (golden_skeleton, gs) = split_numbers(text), split_numbers(golden)
    if skeleton != golden_skeleton or len(xs) != len(gs):
        return None
    worst, first = 0.0, ""
    for x, g in zip(xs, gs, strict=True):
        if not close(x, g) and not first:
            first = f"{x!r} vs golden {g!r}"
        if x != g and math.isfinite(x) and math.isfinite(g):
            worst = max(worst, abs(x - g) / max(abs(x), abs(g)))
    return worst, first


def same_numbers(text: str, golden: str) -> bool:
    found = largest_difference(text, golden)
    return found is not None and not found[1]


def _dump(name: str, text: str) -> None:
    if folder := os.environ.get("HATSWAP_GOLDEN_DUMP"):
        out = Path(folder) / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def _check(path: Path, text: str, what: str) -> None:
    assert path.is_file(), f"no golden file {path}; write it with HATSWAP_WRITE_GOLDEN=1"
    found = largest_difference(text, path.read_text())
    assert found is not None, f"{path} {what}: the text differs beyond its numbers (or their count)"
    assert not found[1], (f"{path} {what} moved: {found[1]} (relative tolerance {RTOL:g}); a change of structure must "
                          f"not change a number")


def assert_golden(name: str, text: str) -> None:
    _dump(name, text)
    if os.environ.get("HATSWAP_WRITE_GOLDEN") == "1":
        (GOLDEN / name).write_text(text)
    _check(GOLDEN / name, text, "")


def _lines_with(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def assert_golden_lines(name: str, key: str, lines: list[str]) -> None:
    """The lines of golden file `name` that start with `key` + ' ' equal `lines` (each starts with it too), numbers
    within the tolerance: one file shared by many parametrized cases, each checking (or, with
    HATSWAP_WRITE_GOLDEN=1, rewriting in place) its own."""
    prefix = key + " "
    assert all(line.startswith(prefix) for line in lines), f"every golden line must start with {prefix!r}"
    _dump(f"{name}.d/{key}", "\n".join(lines) + "\n")
    golden = GOLDEN / name
    if os.environ.get("HATSWAP_WRITE_GOLDEN") == "1":
        old = golden.read_text().splitlines() if golden.is_file() else []
        at = next((k for k, line in enumerate(old) if line.startswith(prefix)), len(old))  # in place, or appended
        rest = [line for line in old if not line.startswith(prefix)]
        at = sum(1 for line in old[:at] if not line.startswith(prefix))
        golden.write_text("\n".join(rest[:at] + lines + rest[at:]) + "\n")
    assert golden.is_file(), f"no golden file {golden}; write it with HATSWAP_WRITE_GOLDEN=1"
    mine = _lines_with(golden.read_text(), prefix)
    assert mine, f"no golden lines for {key!r} in {golden}; write them with HATSWAP_WRITE_GOLDEN=1"
    found = largest_difference("\n".join(lines), "\n".join(mine))
    assert found is not None, f"{golden} for {key!r}: the lines differ beyond their numbers (or their count)"
    assert not found[1], (f"{golden} moved for {key!r}: {found[1]} (relative tolerance {RTOL:g}); a change of "
                          f"structure must not change a number")


# Appended to a fixture run's flags: what makes its numbers the same on every CPU kind (to RTOL).
FLOAT64 = ("--dtype", "float64")


# The kinds of the fixture streams' heads (task-IL): what a strategy declaring its task kinds is checked against.
STREAM_KINDS = {"binary_tasks": ("binary",), "dense_suite": ("segmentation", "detection", "classification")}


def refuses(strategy: str, stream: str) -> bool:
    """The strategy declares task kinds (StrategyMeta.task_kinds) that leave out one of the fixture stream's: its run
    is one error line, with no golden file."""
    from benchmark.registry import STRATEGIES

    kinds = STRATEGIES.get(strategy).meta.task_kinds
    return bool(kinds) and not set(STREAM_KINDS[stream]) <= set(kinds)


@contextlib.contextmanager
def deterministic():
    """torch.use_deterministic_algorithms while a golden fixture runs (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def continual_record(folder: Path) -> str:
    """What a continual run's golden file holds, every number at full precision (repr): R and the held-out losses
    at every evaluation point, and the mean training loss of every epoch (summary.json's eval_score, eval_loss and
    epoch_train_loss). The losses move with any change of training, even one too small to flip a prediction."""
    s = json.loads((Path(folder) / "summary.json").read_text())
    tasks = " ".join(s["tasks"])
    lines = [f"tasks: {tasks}"]
    lines += [f"R {label}: " + " ".join(map(repr, row)) for label, row in s["eval_score"].items()]
    lines += [f"eval_loss {label}: " + " ".join(map(repr, row)) for label, row in s["eval_loss"].items()]
    lines += [f"train_loss exp{i}: " + " ".join(map(repr, epochs)) for i, epochs in enumerate(s["epoch_train_loss"])]
    return "\n".join(lines) + "\n"


def mtl_record(folder: Path) -> str:
    """What a multi-task run's golden file holds, at full precision: every metric of every task at every
    evaluation point, and every epoch's training and validation loss per task (summary.json)."""
    s = json.loads((Path(folder) / "summary.json").read_text())

    def pairs(values: dict) -> str:
        return " ".join(f"{k}={v!r}" for k, v in sorted(values.items()))

    lines = [f"eval {label} {task}: {pairs(metrics)}" for label, by_task in s["evaluations"].items()
             for task, metrics in by_task.items()]
    lines += [f"epoch {e['epoch']} {part}: {pairs(e[part])}" for e in s["epochs"]
              for part in ("train_loss", "val_loss")]
    return "\n".join(lines) + "\n"
