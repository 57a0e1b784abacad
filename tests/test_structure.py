"""The code's shape, checked on the source: the multi-task package depends on the core and never the reverse, no
module imports another's private names, no module over 400 lines, no function over 60 lines; and the model
contract the strategies are typed against holds for the network the harness builds; the licence is declared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from benchmark.errors import UserError
from benchmark.models.contract import MultiHeadModel
from benchmark.tasks import TaskCriterion, TaskSpec
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
