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


def assert_golden_lines(name: str, key: str, lines: list[str]) -> None:
    """The lines of golden file `name` that start with `key` + ' ' equal `lines` (each starts with it too): one
    file shared by many parametrized cases, each checking (or, with HATSWAP_WRITE_GOLDEN=1, rewriting) its own."""
    golden, prefix = GOLDEN / name, key + " "
    assert all(line.startswith(prefix) for line in lines), f"every golden line must start with {prefix!r}"
    old = golden.read_text().splitlines() if golden.is_file() else []
    if os.environ.get("HATSWAP_WRITE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        at = next((k for k, line in enumerate(old) if line.startswith(prefix)), len(old))  # in place, or appended
        rest = [line for line in old if not line.startswith(prefix)]
        at = sum(1 for line in old[:at] if not line.startswith(prefix))
        golden.write_text("\n".join(rest[:at] + lines + rest[at:]) + "\n")
        old = golden.read_text().splitlines()
    mine = [line for line in old if line.startswith(prefix)]
    assert mine, f"no golden lines for {key!r} in {golden}; write them with HATSWAP_WRITE_GOLDEN=1"
    assert lines == mine, f"{golden} moved for {key!r}: a change of structure must not change a number"
