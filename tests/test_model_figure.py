"""`hatswap list --figure`: the model figures are traced from the built models (benchmark/diagnostics/
model_figure.py, benchmark/mtl/figure.py): their DOT source names the backbone, the shared layers and one head per
task, each architecture's own parts (MMoE's experts and gates, cross-stitch's units), and follows the model when its
config changes. Runs without Graphviz's `dot`; the one test that renders is skipped without it."""

import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.diagnostics import model_figure
from benchmark.diagnostics.model_figure import hatswap_drawing, module_graph, write_figure
from benchmark.mtl.figure import architecture_drawing, architecture_names

ROOT = Path(__file__).resolve().parent.parent


def boxes(source: str) -> list[str]:
    """The names of the drawn boxes (modules and functions), in order."""
    return re.findall(r'<TD ROWSPAN="2">([^<]+)', source)


def clusters(source: str) -> list[str]:
    return re.findall(r'label="([^"]+)"', source)


def distinct(names, pattern: str) -> set[str]:
    return {m.group(1) for n in names if (m := re.match(pattern, n))}


def hatswap_source(n_tasks: int, *flags: str) -> str:
    cfg, _ = parse_config(["--profile", "default", *flags])
    return module_graph(hatswap_drawing(cfg, n_tasks)).source


def test_the_hatswap_network_is_backbone_then_shared_layers_then_one_head_per_task():
    source = hatswap_source(3)
    names = boxes(source)
    assert names.count("backbone: VitTinyModel") == 1  # the default profile's backbone, one box
    assert not any("blocks" in n or "attn" in n for n in names)  # its blocks collapsed inside it
    assert [n for n in names if n.startswith("shared.")] == ["shared.0: Linear", "shared.1: ReLU", "shared.2: Dropout"]
    assert [n for n in names if n.startswith("heads.")] == ["heads.0: Linear", "heads.1: Linear", "heads.2: Linear"]
    order = [names.index(n) for n in ("backbone: VitTinyModel", "shared.0: Linear", "heads.0: Linear")]
    assert order == sorted(order)


@pytest.mark.parametrize("n_tasks", [1, 4])
def test_the_hatswap_figure_follows_the_built_model(n_tasks):
    """Its heads are the model's tasks; its shared layers the model's --hidden."""
    names = boxes(hatswap_source(n_tasks, "--hidden", "32,16", "--backbone", "small_cnn"))
    assert distinct(names, r"heads\.(\d+):") == {str(t) for t in range(n_tasks)}
    assert len([n for n in names if re.match(r"shared\.\d+: Linear", n)]) == 2
    assert "backbone: SmallCnn" in names


@pytest.mark.parametrize("n_tasks,experts", [(3, 4), (2, 3)])
def test_mmoe_is_drawn_with_its_experts_and_one_gate_per_task(n_tasks, experts):
    source = module_graph(architecture_drawing("mmoe", n_tasks, ("--experts", str(experts)))).source
    names = boxes(source) + clusters(source)
    assert distinct(names, r"arch\.experts\.(\d+):") == {str(e) for e in range(experts)}
    assert distinct(names, r"arch\.gates\.(\d+):") == {str(t) for t in range(n_tasks)}
    assert distinct(names, r"heads\.(task\d+):") == {f"task{t + 1}" for t in range(n_tasks)}


@pytest.mark.parametrize("flags,units", [((), 3), (("--cross-stitch.positions", "1"), 1)])
def test_cross_stitch_is_drawn_with_one_column_per_task_and_its_units(flags, units):
    """A unit mixes the columns (α · h, an einsum) after each layer the config names."""
    source = module_graph(architecture_drawing("cross-stitch", 3, flags)).source
    names = boxes(source) + clusters(source)
    assert distinct(names, r"arch\.columns\.(\d+)\.") == {"0", "1", "2"}
    assert names.count("einsum") == units


@pytest.mark.parametrize("name", architecture_names())
def test_every_multi_task_architecture_draws_its_backbone_and_task_heads(name):
    source = module_graph(architecture_drawing(name, 2)).source
    names = boxes(source) + clusters(source)
    assert any(n.endswith(": TokenBackbone") for n in names)  # collapsed: its CNN's layers are not drawn
    assert not any("SmallCnn" in n or "Conv2d" in n for n in names)
    assert distinct(names, r"heads\.(task\d+):") == {"task1", "task2"}


def test_drawing_leaves_the_random_streams_where_they_were():
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    module_graph(architecture_drawing("mmoe", 2))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_without_dot_the_dot_source_is_written_and_one_line_says_how_to_render_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(model_figure, "dot_binary", lambda: None)
    assert main(["list", "--figure", str(tmp_path), "--architecture", "shared-bottom"]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "shared-bottom.gv")]
    assert "heads.task1" in (tmp_path / "shared-bottom.gv").read_text()
    assert len(err.strip().splitlines()) == 1 and "apt-get install graphviz" in err and "dot -Tsvg" in err


@pytest.mark.parametrize("argv,message", [
    (["list", "--figure", "F", "--architecture", "mmo"], "close: mmoe"),
    (["list", "--architecture", "mmoe"], "applies to --figure"),
    (["list", "--figure", "F", "--architecture", ","], "names nothing"),
])
def test_bad_figure_requests_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "F").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's `dot` is not installed (apt-get install graphviz)")
def test_with_dot_an_svg_is_rendered(tmp_path):
    cfg, _ = parse_config(["--profile", "default", "--backbone", "small_cnn"])
    gv, svg = write_figure(hatswap_drawing(cfg, 2), tmp_path)
    assert svg.suffix == ".svg" and "<svg" in svg.read_text() and "heads.1: Linear" in svg.read_text()


def test_the_docs_gallery_holds_a_figure_of_every_model():
    names = ["hatswap_net", *architecture_names()]
    missing = [n for n in names if not (ROOT / "docs" / "figures" / f"{n}.svg").is_file()]
    assert not missing, f"docs/figures/ lacks {missing}: `hatswap list --figure docs/figures` draws them"
