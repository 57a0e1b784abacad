"""The code's shape, checked on the source: the multi-task package depends on the core and never the reverse, no
module imports another's private names, no module over 400 lines, no function over 60 lines, no import cycle, every
module of benchmark/ in a declared layer, every registry entry in its own file (tests/layout_rules.py); and the model
contract the strategies are typed against holds for the network the harness builds; the licence is declared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from benchmark.errors import UserError
from benchmark.models.contract import MultiHeadModel
from benchmark.tasks import TaskCriterion, TaskSpec
from tests.layout_rules import (
    FAMILIES,
    PENDING_CYCLE_EDGES,
    PENDING_ENTRIES,
    import_cycles,
    import_graph,
    misplaced_entries,
    registrations,
    unowned,
)
from tests.task_fixtures import label_tasks, vector_net

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("benchmark", "strategies") for p in (ROOT / d).rglob("*.py"))
ENTRY_POINTS = {"benchmark/cli.py", "benchmark/__main__.py"}  # the composition root: wires core and mtl together
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imports(path: Path):
    """→ [(imported module, [imported names])] of every import statement in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names)


def test_the_core_never_imports_the_multi_task_package():
    bad = [f"{_rel(p)} imports {mod}" for p in SOURCES
           if not _rel(p).startswith("benchmark/mtl/") and _rel(p) not in ENTRY_POINTS
           for mod, _ in _imports(p) if mod == "benchmark.mtl" or mod.startswith("benchmark.mtl.")]
    assert bad == []


def test_no_module_imports_another_modules_private_names():
    bad = [f"{_rel(p)}: from {mod} import {name}" for p in SOURCES for mod, names in _imports(p)
           if mod.split(".")[0] in ("benchmark", "strategies", "tests") for name in names if name.startswith("_")]
    assert bad == []


def test_modules_and_functions_stay_short():
    long_modules = [f"{_rel(p)}: {n} lines" for p in SOURCES if (n := len(p.read_text().splitlines())) >
                    MAX_MODULE_LINES]
    long_functions = [f"{_rel(p)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
                      for p in SOURCES for node in ast.walk(ast.parse(p.read_text()))
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long_modules == [] and long_functions == []


def test_the_network_implements_the_model_contract_and_its_cache_view_shares_its_layers():
    net = vector_net(torch.nn.Linear(4, 8), 8, (6,), 0.0, [2, 3])
    assert isinstance(net, MultiHeadModel) and net.feature_form == "vector" and net.head_dims == [2, 3]
    view = net.with_backbone(torch.nn.Identity())
    assert isinstance(view, MultiHeadModel) and view.shared is net.shared and view.heads is net.heads
    assert isinstance(net.backbone, torch.nn.Linear), "with_backbone must not change the model it is called on"
    x = torch.randn(5, 4)
    assert torch.equal(view(net.backbone(x), torch.tensor([0, 1, 1, 0, 1])), net(x, torch.tensor([0, 1, 1, 0, 1])))


def test_task_specs_are_typed_per_kind_and_bad_ones_are_one_clear_error():
    assert TaskSpec("t", "multiclass", {"num_classes": 5}).n_outputs == 5 and TaskSpec("b").primary == "accuracy"
    with pytest.raises(UserError, match="task 'd' of kind 'detection' needs params .*grid, max_boxes"):
        TaskSpec("d", "detection", {"num_classes": 3})
    with pytest.raises(UserError, match="unknown task kind 'regresion'"):
        TaskSpec("r", "regresion")
    with pytest.raises(UserError, match="differ in 'reads'"):
        vector_net(torch.nn.Linear(4, 8), 8, (6,), 0.0, [2]).__class__(
            torch.nn.Identity(), torch.nn.Identity(), 8,
            [*label_tasks([2]), TaskSpec("s", "segmentation", {"num_classes": 3, "image_size": 4})])
    with pytest.raises(UserError, match="must all be packed rows .* or all class labels"):
        TaskCriterion([*label_tasks([2]), TaskSpec("s", "segmentation", {"num_classes": 3, "image_size": 4})])


def test_the_licence_is_mit_and_the_package_says_so():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 hatswap contributors" in text


# --- the layout (tests/layout_rules.py): no import cycle, every module in a layer, every registry entry in its file
def test_no_import_cycle_between_the_modules_of_benchmark_and_strategies():
    graph = import_graph(ROOT)
    assert import_cycles(graph, ignore=PENDING_CYCLE_EDGES) == []
    fixed = [f"{a} → {b}" for a, b in PENDING_CYCLE_EDGES if b not in graph.get(a, ())]
    assert fixed == [], "fixed: drop these from PENDING_CYCLE_EDGES in tests/layout_rules.py"


def test_every_module_directly_under_benchmark_belongs_to_a_declared_layer():
    assert unowned(ROOT) == []


def test_every_registry_entry_lives_in_a_file_of_its_own():
    assert misplaced_entries(ROOT) == []
    unchecked = misplaced_entries(ROOT, allowed=FAMILIES)  # a pending file that no longer breaks the rule is stale
    fixed = [f for f in PENDING_ENTRIES if not any(p.startswith(f) for p in unchecked)]
    gone = [f for f in FAMILIES if not (ROOT / f).is_file() or not registrations(ROOT / f)]
    assert fixed == [] and gone == [], "drop these from tests/layout_rules.py PENDING_ENTRIES / FAMILIES"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_cycle_check_sees_a_cycle_through_a_function_level_import(tmp_path):
    root = _tree(tmp_path, {"benchmark/__init__.py": "", "benchmark/a.py": "from benchmark import b\n",
                            "benchmark/b.py": "def late():\n    import benchmark.a\n", "benchmark/c.py": "import os\n"})
    assert import_cycles(import_graph(root)) == [["benchmark.a", "benchmark.b", "benchmark.a"]]
    assert import_cycles(import_graph(root), ignore={("benchmark.b", "benchmark.a")}) == []


def test_the_cycle_check_counts_a_package_init_and_a_literal_import_module(tmp_path):
    """y imports p's submodule z by name, so p/__init__.py runs first, and it imports x, which imports y; a module's
    import of its own package's siblings (x → p.z) is no cycle, as p has already run."""
    root = _tree(tmp_path, {
        "benchmark/__init__.py": "", "benchmark/p/__init__.py": "from benchmark.p import x\n",
        "benchmark/p/x.py": "from benchmark.p import z\nfrom benchmark.q.y import f\n", "benchmark/p/z.py": "",
        "benchmark/q/__init__.py": "",
        "benchmark/q/y.py": "import importlib\n\ndef f():\n    return importlib.import_module('benchmark.p.z')\n"})
    assert import_cycles(import_graph(root)) == [["benchmark.p", "benchmark.p.x", "benchmark.q.y", "benchmark.p"]]


def test_the_layer_check_names_a_stray_module_an_undeclared_subpackage_and_a_stale_declaration(tmp_path):
    root = _tree(tmp_path, {"benchmark/__init__.py": "", "benchmark/cli.py": "", "benchmark/stray.py": "",
                            "benchmark/harness/run.py": "", "benchmark/odd/x.py": "", "benchmark/profiles/a.json": ""})
    problems = unowned(root, top_level={"__init__": "", "cli": "", "gone": ""}, layers={"harness": ""})
    assert [p.split(":")[0].split(" ")[:2] for p in problems] == [
        ["benchmark/stray.py"], ["benchmark/odd/"], ["TOP_LEVEL", "'gone'"]]
    assert unowned(root, top_level={"__init__": "", "cli": "", "stray": ""}, layers={"harness": "", "odd": ""}) == []


def test_the_registry_check_finds_two_entries_a_computed_name_and_a_misnamed_file(tmp_path):
    reg = "from benchmark.registry import STRATEGIES\n"
    loop = reg + "for n in ('a', 'b'):\n    STRATEGIES.register(n)(print)\n"  # one call site, a name per pass
    root = _tree(tmp_path, {
        "strategies/__init__.py": "", "strategies/good.py": reg + "@STRATEGIES.register('good')\ndef b(): pass\n",
        "strategies/shared_bottom.py": reg + "@STRATEGIES.register('shared-bottom')\ndef b(): pass\n",
        "strategies/two.py": reg + "@STRATEGIES.register('two')\ndef a(): pass\n"
                                   "@STRATEGIES.register('three')\ndef b(): pass\n",
        "strategies/loop.py": loop,
        "strategies/other.py": reg + "import atexit\natexit.register(print)\n@STRATEGIES.register('else')\n"
                                     "def b(): pass\n",
        "benchmark/__init__.py": "", "benchmark/family.py": loop})
    problems = misplaced_entries(root, allowed={"benchmark/family.py": "why"})
    assert [p.split(" ")[0] for p in problems] == ["strategies/loop.py:3", "strategies/other.py", "strategies/two.py"]
    assert "registers 2 entries" in problems[2] and "computed name" in problems[0] and "'else'" in problems[1]
    assert len(misplaced_entries(root, allowed={})) == 4
