"""A figure of a built model: its module graph, traced by torchview and written as Graphviz DOT (`hatswap list
--figure`; the committed ones are docs/figures/*.svg).

The model is built as a run builds it (the Hat Swap network here through the MODELS registry from a run config; each
multi-task architecture through `hatswap mtl`'s builder, benchmark/mtl/figure.py, which the composition root hands
in), then one forward pass on a 1×C×H×W zero image is traced. Every box is named by its module path in the model
(`backbone`, `shared.0`, `heads.2`, `arch.experts.1`, `arch.gates.0`) and its class; a module with sub-modules
above the drawing's depth is a dashed cluster holding them. The backbone is collapsed into one box (its blocks are
the backbone's business, not the architecture's), so the figure shows backbone → shared layers → one head per task.

`<name>.gv` (the DOT source) is always written; `<name>.svg` too when Graphviz's `dot` binary is on PATH (pip
installs the Python packages, not the binary: `apt-get install graphviz`, or `dot -Tsvg <name>.gv -o <name>.svg`).
Building draws weights from torch's generator: the figure builds inside its own generator state (`isolated_rng`), so
a process's random stream is the same with or without it.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.registry import MODELS, SOURCES
from benchmark.tasks import TaskSpec

FONT = "Helvetica,Arial,sans-serif"  # torchview's default (Linux Libertine) is rarely installed
PASS_THROUGH = {"to"}  # dtype casts (the models cast inputs to their compute dtype): drawn as an edge, not a box


@dataclass(frozen=True)
class ModelDrawing:
    """One model to draw. `forward_kwargs`: how its forward returns every task's output ({task: B×out})."""

    name: str  # file stem: hatswap_net, mmoe, ...
    model: nn.Module
    input_shape: tuple[int, int, int]  # C, H, W
    caption: str
    depth: int = 3  # module depth drawn; deeper modules are inside their ancestor's box
    forward_kwargs: dict = field(default_factory=dict)


@contextlib.contextmanager
def isolated_rng(seed: int):
    """Python's, numpy's and torch's (CPU) generators seeded with `seed` inside, restored on exit."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def figure_tasks(n_tasks: int) -> list[TaskSpec]:
    """n binary tasks (2 logits each), the kind of the default stream's tasks."""
    if n_tasks < 1:
        raise UserError(f"a model figure needs at least one task, got {n_tasks}")
    return [TaskSpec(f"task{t + 1}", kind="binary") for t in range(n_tasks)]


def source_shape(source: str, image_size: int = 0) -> tuple[int, int, int]:
    """(C, H, W) of a registered image source's images at `image_size` (0: native)."""
    meta = SOURCES.get(source).meta
    side = image_size or meta.native_size
    return meta.channels, side, side


def hatswap_drawing(cfg, n_tasks: int = 3) -> ModelDrawing:
    """The run config's model (`cfg.architecture`, the Hat Swap network by default) on n binary tasks, built by its
    MODELS builder as `hatswap run` builds it (backbone, --hidden, --dropout, --backbone-mode from `cfg`)."""
    args = cfg.stream_args
    shape = source_shape(getattr(args, "source", None) or "fashion_mnist", getattr(args, "image_size", 0) or 0)
    with isolated_rng(cfg.seed):
        model, identity = MODELS.get(cfg.architecture).build(cfg, figure_tasks(n_tasks), image_size=shape[1],
                                                             in_chans=shape[0])
    caption = (f"{cfg.architecture}: backbone {cfg.backbone} ({identity['mode']}), shared layers "
               f"{list(cfg.hidden) or 'none'}, {n_tasks} binary task heads; input {shape[0]}×{shape[1]}×{shape[2]}")
    return ModelDrawing(cfg.architecture, model, shape, caption, depth=2, forward_kwargs={"task_labels": None})


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """The model contract's backbone (benchmark/models/contract.py): one module, or a ModuleList of columns."""
    b = model.backbone
    return list(b) if isinstance(b, nn.ModuleList) else [b]


def module_graph(drawing: ModelDrawing):
    """→ torchview's graphviz.Digraph of one traced forward pass, boxes named by module path, backbones collapsed."""
    from torchview import draw_graph
    from torchview.computation_node import FunctionNode, ModuleNode

    model = drawing.model
    paths = {id(m): name for name, m in model.named_modules() if name}
    backbones = backbone_modules(model)
    was_training = model.training
    with isolated_rng(0), opaque(backbones):  # eval mode draws nothing; the trace must not move the stream anyway
        graph = draw_graph(model, input_data=[torch.zeros(1, *drawing.input_shape)], graph_name=drawing.name,
                           depth=drawing.depth, device="cpu", mode="eval", expand_nested=True,
                           hide_inner_tensors=True, roll=False, **drawing.forward_kwargs)
    model.train(was_training)
    collapsed = {id(m) for m in backbones}
    for node in _nodes(graph.node_hierarchy):
        if isinstance(node, ModuleNode):
            node.name = f"{paths[node.compute_unit_id]}: {node.name}" if node.compute_unit_id in paths else node.name
            node.is_container = node.is_container or node.compute_unit_id in collapsed  # torchview: "one box"
        elif isinstance(node, FunctionNode) and node.name in PASS_THROUGH:
            node.name = "empty-pass"  # torchview draws an edge through such a node, not the node
    graph.visual_graph.body.clear()
    _reset_render_state(graph)
    graph.fill_visual_graph()
    dot = graph.visual_graph
    dot.body[:] = [re.sub(r"<BR/>depth:-?\d+", "", line) for line in dot.body]
    dot.graph_attr.update(label=drawing.caption, labelloc="t", fontname=FONT, fontsize="14")
    dot.node_attr["fontname"] = FONT
    return dot


@contextlib.contextmanager
def opaque(modules):
    """While tracing, each module computes on plain tensors, which torchview does not record, so it is drawn as one
    box: its output is tied back to its input by `+ 0·sum(input)` (a zero image; the values are unused)."""

    def forward_of(module):
        inner = type(module).forward

        def forward(x, *args, **kwargs):
            out = inner(module, x.as_subclass(torch.Tensor), *args, **kwargs)
            return out + 0 * x.sum()

        return forward

    for m in modules:
        m.forward = forward_of(m)
    try:
        yield
    finally:
        for m in modules:
            del m.forward


def _nodes(hierarchy):
    """Every traced node in torchview's nested {module node: [children]} hierarchy (its root, depth −1, left out)."""
    if isinstance(hierarchy, dict):
        for node, children in hierarchy.items():
            if node.depth >= 0:
                yield node
            for child in children:
                yield from _nodes(child)
    else:
        yield hierarchy


def _reset_render_state(graph) -> None:
    """torchview's render bookkeeping as `ComputationGraph.reset_graph_history` resets it, the traced nodes kept, so
    `fill_visual_graph` draws again after the renaming and collapsing."""
    graph.running_node_id, graph.running_subgraph_id = 0, 1
    graph.id_dict, graph.node_set, graph.edge_list = {}, set(), []
    graph.subgraph_dict = {next(iter(graph.node_hierarchy)).node_id: 0}


def dot_binary() -> str | None:
    return shutil.which("dot")


def write_figure(drawing: ModelDrawing, out_dir: Path) -> list[Path]:
    """→ the files written: <name>.gv, and <name>.svg when `dot` is on PATH."""
    import graphviz

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gv = out_dir / f"{drawing.name}.gv"
    gv.write_text(module_graph(drawing).source)
    if dot_binary() is None:
        return [gv]
    svg = out_dir / f"{drawing.name}.svg"
    graphviz.render("dot", "svg", str(gv), outfile=str(svg), quiet=True)
    return [gv, svg]


def render_hint(out_dir: Path) -> str | None:
    """The line to print when only the DOT source could be written (no `dot` on PATH); None when `dot` is there."""
    if dot_binary() is not None:
        return None
    return (f"wrote the DOT source (.gv) only: Graphviz's `dot` is not on PATH (apt-get install graphviz, or brew "
            f"install graphviz), then `dot -Tsvg {out_dir}/NAME.gv -o NAME.svg` renders one")
