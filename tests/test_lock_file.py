"""requirements.txt, the lock file of the reference results: it pins every dependency pyproject.toml names (the
ranges stay there for users), each pin inside pyproject's range, and the setup script installs from it only when
asked (HATSWAP_LOCKED=1 or --locked)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.txt: {line!r} is not an exact pin (name==version)"
            pins[canonical(name)] = version
    return pins


def declared() -> list[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"]]


def test_the_lock_pins_every_dependency_and_dev_tool_within_pyprojects_ranges():
    from packaging.requirements import Requirement  # pytest's own dependency

    pins = lock_pins()
    requirements = [Requirement(r) for r in declared()]
    missing = [r.name for r in requirements if canonical(r.name) not in pins]
    assert not missing, f"requirements.txt pins none of {missing}; regenerate it (see its header)"
    outside = [f"{r.name}=={pins[canonical(r.name)]} vs {r.specifier}" for r in requirements
               if not r.specifier.contains(pins[canonical(r.name)], prereleases=True)]
    assert not outside, f"pins outside pyproject.toml's ranges: {outside}"
    assert "hatswap" not in pins  # the project itself is installed editable, never pinned


@pytest.mark.parametrize("how", ["env", "flag", "neither"])
def test_setup_installs_from_the_lock_file_only_when_asked(how):
    env = {k: v for k, v in os.environ.items() if k != "HATSWAP_LOCKED"} | ({"HATSWAP_LOCKED": "1"} if how == "env"
                                                                            else {})
    args = ["--locked"] if how == "flag" else []
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup_venv.sh"), *args, "--dry-run"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "pip install" in out and ("-r requirements.txt" in out) == (how != "neither"), out
    assert "-e .[dev]" in out  # hatswap itself, editable, either way
