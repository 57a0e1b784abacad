"""Golden numbers: every strategy's R matrix on the tiny fixture streams, pinned to the committed files in
tests/golden/. A change of structure (moving code, renaming, a new harness) must leave them identical to the last
digit; a change of behaviour on purpose regenerates them (`HATSWAP_WRITE_GOLDEN=1 ./run_tests.sh
tests/test_golden.py`) and says in its commit what moved and why."""

import os
from pathlib import Path

import pytest

from benchmark.config import parse_config
from benchmark.registry import STRATEGIES
from benchmark.run import run

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("stream", ["binary_tasks", "dense_suite"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_matrix_equals_the_committed_golden_file(name, stream, tiny, tiny_dense):
    cfg, _ = parse_config(tiny("--strategy", name) if stream == "binary_tasks" else tiny_dense("--strategy", name))
    matrix = (run(cfg)[0] / "matrix.csv").read_text()
    golden = GOLDEN / f"{stream}-{name}.csv"
    if os.environ.get("HATSWAP_WRITE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(matrix)
    assert golden.is_file(), f"no golden file {golden}; write it with HATSWAP_WRITE_GOLDEN=1"
    assert matrix == golden.read_text()
