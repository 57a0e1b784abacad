import json

import pytest

from benchmark.config import parse_config
from benchmark.harness.run import run


@pytest.mark.gpu
def test_tiny_run_on_cuda(tiny):
    folder, _ = run(parse_config(tiny("--strategy", "replay", "--device", "cuda"))[0])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and 0 <= summary["acc"] <= 1


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["joint", "replay"])
def test_fast_cached_batches_on_cuda_equal_avalanches_fetching(strategy, tiny, tmp_path, monkeypatch):
    """Features kept on the GPU and gathered there give the batches Avalanche's per-sample fetching gives."""
    from benchmark.outputs.results import read_matrix

    args = ("--strategy", strategy, "--device", "cuda", "--backbone-mode", "frozen", "--cache-dir",
            str(tmp_path / "cache"))
    monkeypatch.setenv("HATSWAP_SLOW_BATCHES", "1")
    slow, _ = run(parse_config(tiny(*args, "--out-dir", str(tmp_path / "slow")))[0])
    monkeypatch.delenv("HATSWAP_SLOW_BATCHES")
    fast, _ = run(parse_config(tiny(*args, "--out-dir", str(tmp_path / "fast")))[0])
    assert read_matrix(fast / "matrix.csv") == read_matrix(slow / "matrix.csv")
