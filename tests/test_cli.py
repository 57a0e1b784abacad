"""Bad input: one line naming the fix, a non-zero exit, no traceback, no partial result files."""

import json
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
    (["--binary_tasks.source", "nope"], "unknown source 'nope'; known: cifar10, cifar100, fashion_mnist"),
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
    for name in ("binary_tasks", "split_classes", "permuted", "rotated", "fashion_mnist", "cifar10", "cifar100",
                 "vit_tiny", "naive", "joint", "lwf", "replay", "default"):
        assert name in out
    assert "class-il and domain-il (streams of class-label tasks: binary_tasks, split_classes, permuted, rotated; " \
           "every strategy but progressive, single_task)" in out


@pytest.mark.parametrize("argv,shown", [
    (["--strategy", "ewc"], ["strategy ewc:", "--ewc.ewc-lambda", "(default: 20.0)", "--ewc.decay"]),
    (["--strategy", "lwf+replay"], ["--lwf.alpha", "--lwf.temperature", "--replay.mem-size", "(default: 500)"]),
    (["--backbone", "small_cnn"], ["backbone small_cnn:", "--small_cnn.channels", "(default: [16, 32])"]),
    (["--stream", "dense_suite"], ["stream dense_suite:", "--dense_suite.image-size", "(default: 64)"]),
])
def test_run_help_lists_the_chosen_entries_flags(argv, shown, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", *argv, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(text in out for text in shown) and "hatswap list --flags" in out


@pytest.mark.parametrize("name,shown", [
    ("ewc", ["strategy ewc:", "--ewc.ewc-lambda", "(default: 20.0)"]),
    ("lwf+naive", ["strategy lwf:", "--lwf.alpha", "strategy naive: no flags of its own"]),
    ("binary_tasks", ["stream binary_tasks:", "--binary_tasks.train-per-task", "(default: 2000)"]),
    ("mmoe", ["architecture mmoe:", "--mmoe."]),
])
def test_list_flags_shows_any_entrys_flags_with_defaults(name, shown, capsys):
    assert main(["list", "--flags", name]) == 0
    out = capsys.readouterr().out
    assert all(text in out for text in shown), out


def test_list_flags_of_an_unknown_entry_is_one_line_naming_the_close_ones(capsys):
    assert main(["list", "--flags", "ewcc"]) == 2
    assert "no stream, source, backbone, strategy or multi-task entry is called 'ewcc'; close: ewc" in \
        error_line(capsys)


def test_an_overflowing_strategy_weight_is_named_beside_the_lr(tiny, capsys):
    """1e308 is finite (it passes the flag's checks) but overflows EWC's penalty once there is one: the message
    must not blame the lr alone."""
    code = main(["run", *tiny("--strategy", "ewc", "--ewc.ewc-lambda", "1e308")])
    line = error_line(capsys)
    assert code == 3 and "non-finite training loss" in line and "at experience 1" in line
    assert "lower --lr or a strategy knob that may be too large (--ewc.ewc-lambda 1e+308, --ewc.decay 1)" in line


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    import benchmark.config

    monkeypatch.setattr(benchmark.config, "PROFILE_DIR", tmp_path)

    def write(name: str, profile) -> Path:
        (tmp_path / f"{name}.json").write_text(profile if isinstance(profile, str) else json.dumps(profile))
        return tmp_path / f"{name}.json"

    return write


def test_a_profiles_unknown_strategy_names_the_profile_not_the_flag(profiles, tmp_path, capsys):
    path = profiles("odd", {"streams": ["binary_tasks"], "strategies": ["naive", "ewcc"], "seeds": [0],
                            "config": {"out_dir": str(tmp_path / "results")}})
    assert main(["batch", "--profile", "odd"]) == 2
    line = error_line(capsys)
    assert "unknown strategy 'ewcc'" in line and line.endswith(f"(in the \"strategies\" list of profile odd ({path}))")
    assert main(["batch", "--profile", "odd", "--strategies", "naive,nope"]) == 2
    assert error_line(capsys).endswith("unknown strategy 'nope'; known: " + STRATEGY_NAMES + " (in --strategies)")
    profiles("odd", {"config": {"strategy": "ewcc"}})
    assert main(["run", "--profile", "odd"]) == 2
    assert error_line(capsys).endswith(f"(key 'strategy' of profile odd ({path}))")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", ["run", "batch"])
def test_a_malformed_profile_is_one_line_naming_the_file_line_and_column(command, profiles, capsys):
    path = profiles("broken", '{"streams": ["binary_tasks"],\n "strategies": ["naive",]}')
    assert main([command, "--profile", "broken"]) == 2
    assert error_line(capsys) == f"hatswap: error: profile broken ({path}) is not valid JSON: Expecting value at " \
                                 f"line 2, column 25"


def test_report_without_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no run folders" in error_line(capsys)


def test_module_entry_point_in_a_real_process(tmp_path):
    """`python -m benchmark` as a user runs it: exit code 2, one stderr line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--strategy", "no_such_strategy", "--out-dir",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"hatswap: error: unknown strategy 'no_such_strategy'; known: {STRATEGY_NAMES}"
