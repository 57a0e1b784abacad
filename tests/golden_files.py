"""The committed golden files (tests/golden/) and the one check every golden test uses: equal to the last digit, or
written when HATSWAP_WRITE_GOLDEN=1 (a deliberate behaviour change, said in its commit)."""

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("HATSWAP_WRITE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}; write it with HATSWAP_WRITE_GOLDEN=1"
    assert text == golden.read_text(), f"{golden} moved: a change of structure must not change a number"
