"""tests/golden_files.py: a golden check passes when the text is the same and every number is within the relative
tolerance, and fails otherwise; the tolerance lets through what CPU kernels change and catches a 0.1 % change of
the learning rate; HATSWAP_WRITE_GOLDEN=1 rewrites, HATSWAP_GOLDEN_DUMP=DIR keeps what was checked."""

import pytest

from benchmark.config import parse_config
from benchmark.harness.run import run
from tests import golden_files
from tests.golden_files import FLOAT64, GOLDEN, RTOL, continual_record, deterministic, largest_difference


@pytest.fixture
def golden(tmp_path, monkeypatch):
    monkeypatch.setattr(golden_files, "GOLDEN", tmp_path)
    monkeypatch.delenv("HATSWAP_WRITE_GOLDEN", raising=False)
    monkeypatch.delenv("HATSWAP_GOLDEN_DUMP", raising=False)
    (tmp_path / "r.txt").write_text("R after_exp0: 0.5 1.25e-3 0.0\n")
    (tmp_path / "m.txt").write_text("k1 x=1.0\nk2 x=2.0\n")
    return tmp_path


def test_a_golden_file_matches_within_the_relative_tolerance_and_nothing_else(golden):
    golden_files.assert_golden("r.txt", "R after_exp0: 0.5 1.25e-3 0.0\n")
    golden_files.assert_golden("r.txt", f"R after_exp0: {0.5 * (1 + RTOL / 3)!r} 0.00125 {golden_files.ATOL / 2}\n")
    with pytest.raises(AssertionError, match="moved"):
        golden_files.assert_golden("r.txt", f"R after_exp0: {0.5 * (1 + 3 * RTOL)!r} 0.00125 0.0\n")
    with pytest.raises(AssertionError, match="beyond its numbers"):
        golden_files.assert_golden("r.txt", "R after_exp1: 0.5 1.25e-3 0.0\n")  # another label
    with pytest.raises(AssertionError, match="beyond its numbers"):
        golden_files.assert_golden("r.txt", "R after_exp0: 0.5 1.25e-3\n")  # a number fewer
    with pytest.raises(AssertionError, match="no golden file"):
        golden_files.assert_golden("new.txt", "a 1\n")


def test_golden_lines_are_checked_per_key_within_the_tolerance(golden):
    golden_files.assert_golden_lines("m.txt", "k1", ["k1 x=1.0"])
    golden_files.assert_golden_lines("m.txt", "k1", [f"k1 x={1 + RTOL / 2!r}"])
    with pytest.raises(AssertionError, match="moved for 'k2'"):
        golden_files.assert_golden_lines("m.txt", "k2", ["k2 x=2.5"])
    with pytest.raises(AssertionError, match="no golden lines"):
        golden_files.assert_golden_lines("m.txt", "k3", ["k3 x=3.0"])


def test_writing_rewrites_in_place_and_a_dump_keeps_what_was_checked(golden, monkeypatch, tmp_path_factory):
    dump = tmp_path_factory.mktemp("dump")
    monkeypatch.setenv("HATSWAP_GOLDEN_DUMP", str(dump))
    monkeypatch.setenv("HATSWAP_WRITE_GOLDEN", "1")
    golden_files.assert_golden("r.txt", "R after_exp0: 0.9\n")
    golden_files.assert_golden_lines("m.txt", "k1", ["k1 x=7.0"])
    assert (golden / "r.txt").read_text() == "R after_exp0: 0.9\n"
    assert (golden / "m.txt").read_text() == "k1 x=7.0\nk2 x=2.0\n"  # in place, the other key kept
    assert (dump / "r.txt").read_text() == "R after_exp0: 0.9\n" and (dump / "m.txt.d" / "k1").read_text() == \
        "k1 x=7.0\n"


@pytest.mark.parametrize("stream", ["binary_tasks", "dense_suite"])
def test_a_learning_rate_one_thousandth_larger_fails_the_golden_check(stream, tiny, tiny_dense, capsys):
    """The tolerance is far below what the smallest deliberate change does: naive at lr × 1.001 moves its numbers
    by orders of magnitude more than RTOL (scripts/golden_spread.sh measures the other bound, CPU kernels)."""
    make = tiny if stream == "binary_tasks" else tiny_dense
    lr = parse_config(make())[0].lr
    cfg, _ = parse_config(make("--strategy", "naive", "--lr", repr(lr * 1.001), *FLOAT64))
    with deterministic():
        folder, _ = run(cfg)
    golden = (GOLDEN / f"{stream}-naive.txt").read_text()
    worst, first = largest_difference(continual_record(folder), golden)
    with capsys.disabled():
        print(f"\n{stream} naive, lr × 1.001: largest relative change {worst:.2e} (tolerance {RTOL:g}); first "
              f"beyond it: {first}")
    assert first and worst > 1e3 * RTOL
    with pytest.raises(AssertionError, match="moved"):
        golden_files._check(GOLDEN / f"{stream}-naive.txt", continual_record(folder), "")


def test_float64_runs_compute_in_float64_and_say_so(tiny):
    import json

    import torch

    from benchmark.harness.run import build_stream_and_model

    cfg, _ = parse_config(tiny(*FLOAT64))
    from benchmark.runtime.device import compute_dtype

    with compute_dtype(cfg.dtype):
        bench, model, _ = build_stream_and_model(cfg, torch.device("cpu"), lambda *_: None)
        x, _, t = next(iter(torch.utils.data.DataLoader(bench.scenario.test_stream[0].dataset, batch_size=4)))
        assert x.dtype == torch.float32 and model(x, t).dtype == torch.float64  # float32 images, cast on entry
    assert {p.dtype for p in model.parameters()} == {torch.float64} and model.compute_dtype == torch.float64
    folder, _ = run(cfg)
    assert torch.get_default_dtype() == torch.float32  # the run restored it
    assert json.loads((folder / "config.json").read_text())["config"]["dtype"] == "float64"
