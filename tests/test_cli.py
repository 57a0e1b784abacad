"""Bad input: one line naming the fix, a non-zero exit, no traceback, no partial result files."""

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.registry import BACKBONES, STRATEGIES
from tests.conftest import tiny_args

STRATEGY_NAMES, BACKBONE_NAMES = ", ".join(STRATEGIES.names()), ", ".join(BACKBONES.names())

REPO = Path(__file__).resolve().parent.parent


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hatswap: error: ")
    return last


@pytest.mark.parametrize("extra,fragment", [
    (["--strategy", "nope"], f"unknown strategy 'nope'; known: {STRATEGY_NAMES}"),
    (["--stream", "nope"], "unknown stream 'nope'; known: binary_tasks"),
    (["--backbone", "nope"], f"unknown backbone 'nope'; known: {BACKBONE_NAMES}"),
    (["--binary_tasks.source", "nope"], "unknown source 'nope'; known: cifar10, fashion_mnist"),
    (["--epochs", "two"], "argument --epochs"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bad_input_is_one_line(extra, fragment, tiny, capsys, tmp_path):
    code = main(["run", *tiny(*extra)])
    line = error_line(capsys)
    assert code == 2 and fragment in line
    assert not (tmp_path / "results" / "runs").exists()


def test_missing_dataset_names_the_fix(tmp_path, capsys):
    code = main(["run", *tiny_args(tmp_path / "results", tmp_path / "nodata")])
    line = error_line(capsys)
    assert code == 2 and "apt-get install dataset-fashion-mnist" in line and "nodata/FashionMNIST/raw" in line


def test_unwritable_results_dir(tiny, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # root can write anywhere, but never below a regular file
    code = main(["run", *tiny("--out-dir", str(blocker / "results"))])
    line = error_line(capsys)
    assert code == 2 and f"cannot write results to {blocker / 'results'}" in line and "--out-dir" in line


def test_nan_loss_fails_the_run_and_writes_nothing(tiny, tmp_path, capsys):
    code = main(["run", *tiny("--lr", "1e30")])  # Adam moves each weight by ~lr per step: activations overflow
    line = error_line(capsys)
    assert code == 3 and "non-finite training loss" in line
    runs = tmp_path / "results" / "runs"
    assert not list(runs.rglob("*.json")) and not list(runs.rglob("*.csv"))


def test_debug_shows_the_traceback(tiny):
    with pytest.raises(Exception, match="unknown strategy"):
        main(["run", *tiny("--strategy", "nope", "--debug")])


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("binary_tasks", "fashion_mnist", "cifar10", "vit_tiny", "naive", "joint", "lwf", "replay", "default"):
        assert name in out


def test_report_without_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no run folders" in error_line(capsys)


def test_module_entry_point_in_a_real_process(tmp_path):
    """`python -m benchmark` as a user runs it: exit code 2, one stderr line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--strategy", "no_such_strategy", "--out-dir",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"hatswap: error: unknown strategy 'no_such_strategy'; known: {STRATEGY_NAMES}"
