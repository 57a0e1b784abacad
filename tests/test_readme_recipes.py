"""The README's "Adding a …" recipes, executed as written: each fenced ```python block after a `<!-- recipe: NAME -->`
comment is written to the file its first line names (`# strategies/l2_anchor.py`), imported under that module name
from a temporary folder, and checked for its defining effect (a tiny run with it writes its R matrix; a multi-task
model with it trains in the contract test's setup). Every registry a recipe adds to is restored afterwards, so the
tests that parametrize over the registries never see a recipe's entry."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.models.hatswap_net import build_net
from benchmark.mtl import ARCHITECTURES, SCHEDULES, WEIGHTINGS, MultiTaskModel
from benchmark.mtl.task_sets.mtl_data import MTLData
from benchmark.mtl.train import train_stages
from benchmark.outputs.results import read_matrix
from benchmark.registry import BACKBONES, KINDS, STRATEGIES, STREAMS
from benchmark.tasks import TaskCriterion, TaskSpec
from strategies.lwf import LwFPlugin
from tests.mtl_fixtures import N_FEATURES, tiny_cfg, tiny_data
from tests.test_composition import PluginTypes
from tests.test_paired_runs import HeadSnapshots

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RECIPE = r"<!-- recipe: ([\w-]+) -->\n```python\n(.*?)```"
RECIPES = dict(re.findall(RECIPE, README.read_text() + (ROOT / "docs" / "multi-task.md").read_text(), re.S))
# recipe → (registry it adds to, the name it registers)
ADDS = {"strategy": (STRATEGIES, "l2_anchor"), "stream": (STREAMS, "hard_pairs"), "backbone": (BACKBONES, "tiny_mlp"),
        "mtl-architecture": (ARCHITECTURES, "adapters"), "mtl-weighting": (WEIGHTINGS, "inverse-loss"),
        "task-kind": (KINDS, "regression")}


MAX_README_LINES = 260  # the issue asks for "at most about 250"; four executed recipes are most of it


def isolate(monkeypatch, registry) -> None:
    """What a test registers into `registry` is gone when the test ends (the built-in entries are loaded first)."""
    registry.names()
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def load_recipe(name: str, tmp_path: Path, monkeypatch):
    """The recipe's code as the module its first line names, imported from tmp_path (never the source tree)."""
    code = RECIPES[name]
    target = code.splitlines()[0].removeprefix("#").strip()
    assert (ROOT / target).parent.joinpath("__init__.py").is_file(), f"recipe {name}: {target} is in no package"
    registry, entry = ADDS[name]
    isolate(monkeypatch, registry)
    file = tmp_path / Path(target).name
    file.write_text(code)
    module_name = target.removesuffix(".py").replace("/", ".")
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    assert entry in registry.names(), f"recipe {name} did not register {entry!r}"
    return module


def run_folder(out: Path, stream: str, strategy: str) -> Path:
    return out / "runs" / stream / strategy / "seed0"


def test_readme_holds_every_recipe_and_stays_short():
    assert set(ADDS) <= set(RECIPES), f"README recipes found: {sorted(RECIPES)}"
    text = README.read_text()
    pages = [README, *ROOT.glob("docs/*.md"), ROOT / "results" / "reference" / "README.md",
             *[p for d in ("benchmark", "strategies", "tests") for ext in ("py", "json")
               for p in (ROOT / d).rglob(f"*.{ext}")]]
    for page in pages:  # the source documents' numbers collide with random seeds: name them instead
        assert not re.search(r"seed[ _]00\d", page.read_text().lower().replace("seed[ _]00", "")), \
            f"{page}: name the source documents, not their numbers"
    assert len(text.splitlines()) <= MAX_README_LINES


def test_strategy_recipe(tiny, tmp_path, monkeypatch):
    load_recipe("strategy", tmp_path, monkeypatch)
    assert main(["run", *tiny("--strategy", "l2_anchor", "--l2_anchor.strength", "0.5")]) == 0
    assert main(["run", *tiny("--strategy", "naive")]) == 0
    out = tmp_path / "results"
    folder = run_folder(out, "binary_tasks", "l2_anchor")
    _, rows, R = read_matrix(folder / "matrix.csv")
    assert rows == ["init", "after_exp0", "after_exp1", "after_exp2"] and len(R[0]) == 3
    config = json.loads((folder / "config.json").read_text())
    assert config["config"]["l2_anchor.strength"] == 0.5
    anchored = json.loads((folder / "summary.json").read_text())["epoch_train_loss"]
    naive = json.loads((run_folder(out, "binary_tasks", "naive") / "summary.json").read_text())["epoch_train_loss"]
    epochs = len(anchored) // 3
    assert anchored[:epochs] == naive[:epochs]  # no anchor while learning the first task: naive, bit for bit
    assert anchored[epochs:] != naive[epochs:]  # then the penalty is in the loss
    heads = HeadSnapshots()  # a recipe users copy keeps the harness's invariant: past heads stay as they were
    cfg, _ = parse_config(tiny("--strategy", "l2_anchor", "--out-dir", str(tmp_path / "heads")))
    run(cfg, extra_plugins=[heads])
    assert all(torch.equal(a, b) for i in (1, 2) for j in range(i)
               for a, b in zip(heads.after[i][j], heads.after[j][j], strict=True))


def test_the_strategy_recipe_combines_with_another(tiny, tmp_path, monkeypatch):
    recipe = load_recipe("strategy", tmp_path, monkeypatch)
    assert "l2_anchor" in STRATEGIES.composable()
    probe = PluginTypes()
    cfg, _ = parse_config(tiny("--strategy", "l2_anchor+lwf", "--l2_anchor.strength", "0.5", "--lwf.alpha", "2"))
    folder, status = run(cfg, extra_plugins=[probe])
    own = probe.types.index(PluginTypes) + 1  # the parts' plugins follow the harness's, the probe last of those
    assert status == "done" and probe.types[own:own + 2] == [recipe.L2AnchorPlugin, LwFPlugin]
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["l2_anchor.strength"] == 0.5 and config["lwf.alpha"] == 2.0
    assert read_matrix(folder / "matrix.csv")[1][-1] == "after_exp2"


def test_stream_recipe(tiny, fmnist_root, tmp_path, monkeypatch):
    load_recipe("stream", tmp_path, monkeypatch)
    bench = STREAMS.get("hard_pairs").build(None, seed=0, data_root=fmnist_root, download=False, apt_install=False)
    assert [t.name for t in bench.tasks] == ["tshirt_vs_shirt", "sneaker_vs_ankle_boot"]
    assert [len(e.dataset) for e in bench.scenario.train_stream] == [60, 60]  # the fixture's 30 images per class
    assert [len(e.dataset) for e in bench.scenario.test_stream] == [24, 24]
    assert [e.task_labels for e in bench.scenario.test_stream] == [[0], [1]]
    x, y, task = bench.scenario.train_stream[1].dataset[0]
    assert x.shape == (1, 28, 28) and -1 <= x.min() <= x.max() <= 1 and int(y) in (0, 1) and task == 1
    assert main(["run", *tiny("--stream", "hard_pairs")]) == 0
    tasks, rows, _ = read_matrix(run_folder(tmp_path / "results", "hard_pairs", "naive") / "matrix.csv")
    assert tasks == ["tshirt_vs_shirt", "sneaker_vs_ankle_boot"] and rows == ["init", "after_exp0", "after_exp1"]
    assert main(["run", *tiny("--stream", "hard_pairs", "--scenario", "class-il")]) == 0  # Benchmark.of: any scenario
    assert (run_folder(tmp_path / "results", "hard_pairs-class-il", "naive") / "matrix_task_il.csv").is_file()


def test_backbone_recipe(tiny, tmp_path, monkeypatch):
    load_recipe("backbone", tmp_path, monkeypatch)
    assert main(["run", *tiny("--backbone", "tiny_mlp", "--tiny_mlp.width", "24")]) == 0
    folder = run_folder(tmp_path / "results", "binary_tasks", "naive")
    assert read_matrix(folder / "matrix.csv")[1][-1] == "after_exp2"
    assert json.loads((folder / "config.json").read_text())["backbone"]["arch"] == "tiny_mlp"
    model = MultiTaskModel(["a", "b"], backbone="tiny_mlp", backbone_args={"width": 8}, input_shape=(1, 28, 28))
    assert {t: y.shape for t, y in model(torch.zeros(3, 1, 28, 28)).items()} == {"a": (3, 2), "b": (3, 2)}


def train_tiny(architecture: str, weighting: str) -> MultiTaskModel:
    """The contract test's setup (tests/test_mtl_contract.py): three tasks of three kinds; every loss must fall."""
    torch.manual_seed(0)
    data = tiny_data()
    model = MultiTaskModel(data.tasks, architecture=architecture, loss_weighting=weighting, in_features=N_FEATURES,
                           shared_layers=[16, 16], task_layers=[8])
    stages = SCHEDULES.get("joint").build(None, epochs=3, tasks=tuple(model.task_names))
    rows, _, _ = train_stages(model, data, stages, tiny_cfg(), "cpu")
    init, after = rows[0][1], rows[-1][1]
    for t in model.task_names:
        assert after[t]["loss"] < init[t]["loss"], f"{architecture}/{weighting} {t}: {init[t]} → {after[t]}"
    return model


@pytest.mark.parametrize("weighting", ["equal", "gradnorm", "pcgrad"])
def test_mtl_architecture_recipe(weighting, tmp_path, monkeypatch):
    load_recipe("mtl-architecture", tmp_path, monkeypatch)
    model = train_tiny("adapters", weighting)
    assert model.architecture_name == "adapters"
    reps = model.arch(torch.zeros(2, N_FEATURES))
    assert set(reps) == set(model.task_names) and all(r.shape == (2, 16) for r in reps.values())


def test_mtl_weighting_recipe(tmp_path, monkeypatch):
    load_recipe("mtl-weighting", tmp_path, monkeypatch)
    model = train_tiny("shared-bottom", "inverse-loss")
    assert model.weighting_name == "inverse-loss"
    w = model.weighting.weights({"a": torch.tensor(1.0), "b": torch.tensor(3.0)})
    assert torch.allclose(torch.stack([w["a"], w["b"]]), torch.tensor([1.5, 0.5]))  # sum T, ∝ 1/L


def test_task_kind_recipe(tmp_path, monkeypatch):
    """The new kind's head, loss and metric in a multi-task model that learns it, and in the continual model."""
    load_recipe("task-kind", tmp_path, monkeypatch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, N_FEATURES, generator=g)
    y = {"size": 2 * x[:, 0] - x[:, 1], "sign": (x[:, 2] > 0).long()}
    tasks = [TaskSpec("size", kind="regression"), TaskSpec("sign", kind="binary")]
    data = MTLData(tasks, {"train": x, "test": x}, {"train": y, "test": y})
    torch.manual_seed(0)
    model = MultiTaskModel(tasks, in_features=N_FEATURES, shared_layers=[16], task_layers=[8])
    stages = SCHEDULES.get("joint").build(None, epochs=30, tasks=("size", "sign"))
    rows, _, _ = train_stages(model, data, stages, tiny_cfg(batch_size=16), "cpu")
    before, after = rows[0][1]["size"], rows[-1][1]["size"]
    assert after["r2"] > 0.8 > before["r2"] and after["mse"] < before["mse"] and tasks[0].primary == "r2"
    net = build_net(torch.nn.Identity(), tasks[:1] * 2, feat_dim=N_FEATURES, hidden=(8,))
    out = net(x[:4], torch.tensor([0, 1, 1, 0]))
    assert out.shape == (4, 1) and float(TaskCriterion(tasks[:1] * 2)(out, y["size"][:4])) > 0


def test_recipes_leave_the_registries_as_they_were():
    for registry, name in ADDS.values():
        assert name not in registry.names()
