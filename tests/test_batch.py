import pytest

from benchmark.config import parse_config
from benchmark.grid.batch import run_batch
from benchmark.harness.run import run
from tests.conftest import tiny_args


def test_batch_continues_past_a_failed_run_lists_it_and_resumes(tmp_path, fmnist_root, capsys):
    results = tmp_path / "results"
    args = tiny_args(results, fmnist_root)[2:]  # the batch supplies --profile itself
    # A folder holding another config's results makes exactly this run fail (it must not be overwritten).
    blocked, _ = run(parse_config(tiny_args(results, fmnist_root, "--strategy", "lwf", "--lr", "0.0123"))[0])
    before = (blocked / "summary.json").read_text()
    capsys.readouterr()
    code = run_batch("smoke", args, strategies=["naive", "lwf", "joint"])
    captured = capsys.readouterr()
    assert code == 1
    assert "binary_tasks/lwf/seed0 failed" in captured.err and "1 run(s) failed" in captured.err
    assert "(lr: 0.0123 → 0.005)" in captured.err
    assert (results / "runs/binary_tasks/naive/seed0/summary.json").is_file()
    assert (results / "runs/binary_tasks/joint/seed0/summary.json").is_file()  # ran after the failure
    assert (blocked / "summary.json").read_text() == before
    assert "binary_tasks/lwf/seed0" in (results / "failed_runs.txt").read_text()
    assert "| naive | 1 |" in captured.out and "Failed runs" in (results / "summary.md").read_text()
    assert "ETA" in captured.err

    (blocked / "summary.json").unlink()  # now incomplete: the rerun redoes it, and only what is missing
    code = run_batch("smoke", args, strategies=["naive", "lwf", "joint"])
    err = capsys.readouterr().err
    assert code == 0 and "naive/seed0: skipped" in err and "joint/seed0: skipped" in err and "lwf/seed0: done" in err
    assert not (results / "failed_runs.txt").exists()


def test_batch_rejects_bad_flags_before_training(tmp_path, fmnist_root):
    import pytest

    from benchmark.errors import UserError

    with pytest.raises(UserError, match="--epochs"):
        run_batch("smoke", [*tiny_args(tmp_path, fmnist_root)[2:], "--epochs", "0"])
    assert not (tmp_path / "runs").exists()


def test_a_strategy_flag_applies_to_its_own_runs_of_a_batch():
    from benchmark.errors import UserError
    from benchmark.grid.batch import args_for_run

    todo = [("binary_tasks", s, 0) for s in ("naive", "lwf", "replay")]
    args = ["--epochs", "1", "--lwf.alpha", "2", "--replay.mem-size=50", "--lwf.temperature", "-3"]
    assert args_for_run(args, "binary_tasks", "naive", todo) == ["--epochs", "1"]
    assert args_for_run(args, "binary_tasks", "lwf", todo) == ["--epochs", "1", "--lwf.alpha", "2",
                                                               "--lwf.temperature", "-3"]
    assert args_for_run(args, "binary_tasks", "replay", todo) == ["--epochs", "1", "--replay.mem-size=50"]
    cfg, _ = parse_config(["--strategy", "lwf", *args_for_run(args[:4], "binary_tasks", "lwf", todo)])
    assert cfg.strategy_args.alpha == 2.0 and cfg.epochs == 1
    with pytest.raises(UserError, match="belongs to strategy lwf, which this batch does not run .*naive, replay"):
        args_for_run(["--lwf.alpha", "2"], "binary_tasks", "naive", [t for t in todo if t[1] != "lwf"])
