"""Golden numbers, pinned to the committed files in tests/golden/: every continual strategy's R matrix, held-out
losses and training losses on the tiny fixture streams (checked by tests/test_strategies.py's contract test, on the
same run), and the multi-task runs here (and every architecture × weighting × schedule's scores, by
tests/test_mtl_contract.py on its run), all trained in float64. Any CPU kind must reproduce them within the
relative tolerance of tests/golden_files.py; a change of structure must reproduce them to the last digit on the same
machine (scripts/golden_bitexact.sh BASE); a change of behaviour on purpose regenerates them
(`HATSWAP_WRITE_GOLDEN=1 ./run_tests.sh tests/test_golden.py tests/test_strategies.py tests/test_mtl_contract.py`)
and says in its commit what moved and why."""

import pytest

from benchmark.cli import main
from benchmark.mtl import ARCHITECTURES
from benchmark.registry import STRATEGIES
from tests.golden_files import FLOAT64, GOLDEN, assert_golden, deterministic, mtl_record, refuses, same_numbers


def has_golden(name: str, stream: str) -> bool:
    """A strategy refused on a stream (heads of kinds it cannot train, or maps a prompt method cannot read; the
    error is checked in tests/test_strategies.py) has no golden file there."""
    return not refuses(name, stream) and not (STRATEGIES.get(name).meta.prompts_backbone and stream == "dense_suite")


@pytest.mark.parametrize("stream,name", [(s, n) for s in ("binary_tasks", "dense_suite") for n in STRATEGIES.names()
                                         if n != "naive" and has_golden(n, s)])
def test_every_strategy_changes_R_relative_to_naive(name, stream):
    """On the same seed and data, a strategy whose R equals naive's did nothing (a plugin never called, a penalty
    that is always 0), unless it declares which strategy it reproduces."""
    declared = STRATEGIES.get(name).meta.equivalent_to
    mine, naive = (GOLDEN / f"{stream}-{name}.txt").read_text(), (GOLDEN / f"{stream}-naive.txt").read_text()
    if declared:
        assert same_numbers(mine, (GOLDEN / f"{stream}-{declared}.txt").read_text())
    else:
        assert not same_numbers(mine, naive)


MTL_TINY = ["--mtl_tasks.train-size", "60", "--mtl_tasks.val-size", "20", "--mtl_tasks.test-size", "40",
            "--small_cnn.channels", "4", "--shared-width", "8", "--task-layers", "8", "--epochs", "2",
            "--batch-size", "16", "--no-download", "--no-apt-install", "--device", "cpu", "--tasks", "4",
            "--experts", "2", "--shared-layers", "2"]


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_mtl_run_matrix_equals_the_committed_golden_file(architecture, tmp_path, fmnist_root):
    """`hatswap mtl` end to end on the fixture files (image backbone, all four tasks), one run per architecture."""
    with deterministic():
        assert main(["mtl", "--architecture", architecture, "--data-root", str(fmnist_root), "--out-dir",
                     str(tmp_path), *MTL_TINY, *FLOAT64]) == 0
    (folder,) = (tmp_path / "mtl" / "runs").glob("*/seed0")
    assert_golden(f"mtl-{architecture}.txt", mtl_record(folder))
