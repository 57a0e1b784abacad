"""The committed golden files (tests/golden/) and the one check every golden test uses: equal to the last digit, or
written when HATSWAP_WRITE_GOLDEN is set (a deliberate behaviour change, said in its commit).

The same code gives the same numbers on the same kind of CPU, but not across CPU kinds: their matrix and convolution
kernels (MKL, oneDNN) sum in different orders, and a few training steps amplify the last bit (the dense suite's R
moves by up to 3e-3 between the first reference machine and an Intel Xeon with AMX). So tests/golden/ holds the first
reference machine's files, and each sub-folder the files that differ on another CPU kind (tests/golden/amx-cpu/: the
AMX machine). A check passes when the numbers equal those of any one of them, to the last digit: a change of
structure must reproduce one machine's numbers exactly, and a change that moves numbers matches none.

Writing: HATSWAP_WRITE_GOLDEN=1 rewrites tests/golden/ itself; HATSWAP_WRITE_GOLDEN=<sub-folder> (e.g. amx-cpu)
writes that CPU kind's files. Writing never deletes: after a behaviour change on purpose, whoever rewrote the files of
the machine at hand deletes by hand the other CPU kinds' copies of what moved (they no longer describe the code, and
a stale copy could let a change back to the old numbers pass); another CPU kind adds its own back."""

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def _write_to() -> Path | None:
    """Where HATSWAP_WRITE_GOLDEN writes: tests/golden/ for 1, a sub-folder for its name, nothing when unset."""
    value = os.environ.get("HATSWAP_WRITE_GOLDEN", "")
    if not value:
        return None
    folder = GOLDEN if value == "1" else GOLDEN / value
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _candidates(name: str) -> list[Path]:
    """tests/golden/NAME and every sub-folder's NAME that exists."""
    variants = sorted(d / name for d in GOLDEN.iterdir() if d.is_dir()) if GOLDEN.is_dir() else []
    return [p for p in [GOLDEN / name, *variants] if p.is_file()]


def assert_golden(name: str, text: str) -> None:
    if folder := _write_to():
        (folder / name).write_text(text)
    candidates = _candidates(name)
    assert candidates, f"no golden file {GOLDEN / name}; write it with HATSWAP_WRITE_GOLDEN=1"
    assert any(text == p.read_text() for p in candidates), (
        f"{GOLDEN / name} moved (compared with {len(candidates)} CPU kind(s)' files): a change of structure must not "
        f"change a number")


def _lines_with(path: Path, prefix: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(prefix)]


def assert_golden_lines(name: str, key: str, lines: list[str]) -> None:
    """The lines of golden file `name` that start with `key` + ' ' equal `lines` (each starts with it too): one
    file shared by many parametrized cases, each checking (or, with HATSWAP_WRITE_GOLDEN, rewriting) its own."""
    prefix = key + " "
    assert all(line.startswith(prefix) for line in lines), f"every golden line must start with {prefix!r}"
    if folder := _write_to():
        golden = folder / name
        old = golden.read_text().splitlines() if golden.is_file() else []
        at = next((k for k, line in enumerate(old) if line.startswith(prefix)), len(old))  # in place, or appended
        rest = [line for line in old if not line.startswith(prefix)]
        at = sum(1 for line in old[:at] if not line.startswith(prefix))
        golden.write_text("\n".join(rest[:at] + lines + rest[at:]) + "\n")
    known = [mine for mine in (_lines_with(p, prefix) for p in _candidates(name)) if mine]
    assert known, f"no golden lines for {key!r} in {GOLDEN / name}; write them with HATSWAP_WRITE_GOLDEN=1"
    assert any(lines == mine for mine in known), (
        f"{GOLDEN / name} moved for {key!r} (compared with {len(known)} CPU kind(s)' lines): a change of structure "
        f"must not change a number")
