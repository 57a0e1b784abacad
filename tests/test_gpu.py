import json

import pytest

from benchmark.config import parse_config
from benchmark.run import run


@pytest.mark.gpu
def test_tiny_run_on_cuda(tiny):
    folder, _ = run(parse_config(tiny("--strategy", "replay", "--device", "cuda"))[0])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and 0 <= summary["acc"] <= 1
