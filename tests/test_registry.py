import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES, TASK_SETS, WEIGHTINGS
from benchmark.registry import BACKBONES, KINDS, SOURCES, STRATEGIES, STREAMS, Registry


def test_duplicate_name_raises():
    reg = Registry("thing", "benchmark")
    reg.register("a")(lambda: 1)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(lambda: 2)


@pytest.mark.parametrize("reg,known", [(STREAMS, "binary_tasks"), (SOURCES, "cifar10, cifar100, fashion_mnist"),
                                       (BACKBONES, ", ".join(BACKBONES.names())),
                                       (STRATEGIES, ", ".join(STRATEGIES.names()))])
def test_unknown_name_lists_known_ones(reg, known):
    with pytest.raises(UserError) as e:
        reg.get("nope")
    assert known in str(e.value) and "'nope'" in str(e.value)


def test_the_registry_module_loads_no_other_part_of_the_harness_and_no_avalanche():
    """Every command imports it, most never build a strategy, and Avalanche takes seconds to import: a generated
    strategy builder imports it when called. Importing nothing of the harness but its errors, the registry is in no
    import cycle (strategy composition lives in it, no longer in a module that imported it back)."""
    code = ("import sys, benchmark.registry; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('benchmark', 'strategies', 'avalanche', 'torch')))")
    root = Path(__file__).resolve().parent.parent
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert ast.literal_eval(loaded) == ["benchmark", "benchmark.errors", "benchmark.registry"]


def _imported_by_init(package: str) -> set[str]:
    """Submodules that `<package>/__init__.py` imports (`from package import a, b` / `import package.a`)."""
    init = Path(importlib.import_module(package).__file__)
    names = set()
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == package:
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + "."):
            names.add(node.module[len(package) + 1:].split(".")[0])
        elif isinstance(node, ast.Import):
            names |= {a.name[len(package) + 1:].split(".")[0] for a in node.names if a.name.startswith(package + ".")}
    return names


def layout_problems(reg: Registry, stem_of=lambda name: name, every_file: bool = False) -> list[str]:
    """A registry whose names are file stems: each name is registered from its own file, each file that registers
    (every file, with every_file) registers exactly its own stem and is imported by the package's __init__.py."""
    files = sorted(p.stem for p in Path(importlib.import_module(reg.package).__file__).parent.glob("*.py")
                   if p.stem != "__init__")
    for stem in files:  # a file __init__ forgets would otherwise register nothing and go unnoticed
        importlib.import_module(f"{reg.package}.{stem}")
    module_of = {name: reg.get(name).build.__module__ for name in reg.names()}
    problems = [f"{name!r} is registered from {mod}, not {reg.package}.{stem_of(name)}"
                for name, mod in module_of.items() if mod != f"{reg.package}.{stem_of(name)}"]
    imported = _imported_by_init(reg.package)
    for stem in files:
        names = sorted(n for n, mod in module_of.items() if mod == f"{reg.package}.{stem}")
        if (names or every_file) and [stem_of(n) for n in names] != [stem]:
            problems.append(f"{reg.package}/{stem}.py registers {names}, not exactly its stem")
        if (names or every_file) and stem not in imported:
            problems.append(f"{reg.package}/{stem}.py is not imported by {reg.package}/__init__.py")
    return problems


@pytest.mark.parametrize("reg,stem_of,every_file", [
    (STRATEGIES, str, True), (KINDS, str, True), (STREAMS, str, False), (SOURCES, str, False), (TASK_SETS, str, False),
    (WEIGHTINGS, str, False), (SCHEDULES, str, False),
    (ARCHITECTURES, lambda name: name.replace("-", "_"), False),  # documented: the stem with '-' for '_'
], ids=lambda x: getattr(x, "kind", None))
def test_registry_names_match_file_stems(reg, stem_of, every_file):
    """BACKBONES is not here on purpose: dino.py registers four names (dino_vits16, dino_vitb16, dinov2_vits14/b14)."""
    assert layout_problems(reg, stem_of, every_file) == []


def test_layout_check_catches_a_misnamed_or_unimported_file(tmp_path, monkeypatch):
    pkg = tmp_path / "hatswap_fake_registry"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from hatswap_fake_registry import a, reg  # noqa: F401\n")
    (pkg / "reg.py").write_text("from benchmark.registry import Registry\nREG = Registry('thing', "
                                "'hatswap_fake_registry')\n")
    (pkg / "a.py").write_text("from hatswap_fake_registry.reg import REG\n@REG.register('b')\ndef build(): pass\n")
    (pkg / "c.py").write_text("from hatswap_fake_registry.reg import REG\n@REG.register('c')\ndef build(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("hatswap_fake_registry")]:
        monkeypatch.delitem(sys.modules, mod)
    from hatswap_fake_registry.reg import REG

    problems = layout_problems(REG)
    assert any("'b' is registered from hatswap_fake_registry.a" in p for p in problems)
    assert any("a.py registers ['b']" in p for p in problems)
    assert any("c.py is not imported" in p for p in problems)
    assert any("reg.py registers []" in p for p in layout_problems(REG, every_file=True))


def test_strategy_options_are_typed_and_a_misspelt_one_is_an_error():
    assert STRATEGIES.get("joint").meta.one_shot and not STRATEGIES.get("joint").meta.baseline
    assert STRATEGIES.get("single_task").meta.baseline and not STRATEGIES.get("naive").meta.one_shot
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['one_shoot'\].*known: baseline, draws_own_batches, "
                                        r"equivalent_to, needs_hidden, one_shot"):
        STRATEGIES.register("misspelt", one_shoot=True)
    assert "misspelt" not in STRATEGIES.names()
