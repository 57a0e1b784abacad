"""Golden numbers, pinned to the committed files in tests/golden/: every continual strategy's R matrix on the tiny
fixture streams (checked by tests/test_strategies.py's contract test, on the same run), and the multi-task runs
here (and every architecture × weighting × schedule's scores, by tests/test_mtl_contract.py on its run). A change
of structure (moving code, renaming, a new harness) must leave them identical to the last digit, on one of the CPU
kinds that have golden files (tests/golden_files.py); a change of behaviour on purpose regenerates them
(`HATSWAP_WRITE_GOLDEN=1 ./run_tests.sh tests/test_golden.py tests/test_strategies.py tests/test_mtl_contract.py`;
`=amx-cpu` instead of `=1` on that CPU kind, then the other kinds' stale copies deleted) and says in its commit what
moved and why."""

import pytest

from benchmark.cli import main
from benchmark.mtl import ARCHITECTURES
from benchmark.registry import STRATEGIES
from tests.golden_files import GOLDEN, assert_golden


@pytest.mark.parametrize("stream", ["binary_tasks", "dense_suite"])
@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if n != "naive"])
def test_every_strategy_changes_R_relative_to_naive(name, stream):
    """On the same seed and data, a strategy whose R equals naive's did nothing (a plugin never called, a penalty
    that is always 0), unless it declares which strategy it reproduces."""
    declared = STRATEGIES.get(name).meta.equivalent_to
    mine, naive = (GOLDEN / f"{stream}-{name}.csv").read_text(), (GOLDEN / f"{stream}-naive.csv").read_text()
    assert (mine == (GOLDEN / f"{stream}-{declared}.csv").read_text()) if declared else mine != naive


MTL_TINY = ["--mtl_tasks.train-size", "60", "--mtl_tasks.val-size", "20", "--mtl_tasks.test-size", "40",
            "--small_cnn.channels", "4", "--shared-width", "8", "--task-layers", "8", "--epochs", "2",
            "--batch-size", "16", "--no-download", "--no-apt-install", "--device", "cpu", "--tasks", "4",
            "--experts", "2", "--shared-layers", "2"]


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_mtl_run_matrix_equals_the_committed_golden_file(architecture, tmp_path, fmnist_root):
    """`hatswap mtl` end to end on the fixture files (image backbone, all four tasks), one run per architecture."""
    assert main(["mtl", "--architecture", architecture, "--data-root", str(fmnist_root), "--out-dir",
                 str(tmp_path), *MTL_TINY]) == 0
    (folder,) = (tmp_path / "mtl" / "runs").glob("*/seed0")
    assert_golden(f"mtl-{architecture}.csv", (folder / "matrix.csv").read_text())
