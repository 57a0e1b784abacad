"""The multi-task architectures as model figures (benchmark/diagnostics/model_figure.py draws them): each built by
`hatswap mtl`'s builder (benchmark/mtl/run.py's `build_model`) from the `mtl` profile's config with that
architecture, on n binary tasks (the task set's own tasks need its images; their kinds change only the heads' last
layer). The composition root (benchmark/cli.py) hands these to the core, which never imports this package.
"""

from __future__ import annotations

from benchmark.config import load_profile
from benchmark.diagnostics.model_figure import ModelDrawing, figure_tasks, isolated_rng, source_shape
from benchmark.mtl.config import parse_mtl_config
from benchmark.mtl.registries import ARCHITECTURES
from benchmark.mtl.run import build_model

PROFILE = "mtl"  # its shared config: small CNN backbone, flattened map, 3 shared 64-wide layers, a 64-wide task layer


def architecture_drawing(name: str, n_tasks: int = 3, flags: tuple[str, ...] = ()) -> ModelDrawing:
    """Architecture `name` as `hatswap mtl --architecture name [flags]` builds it under the mtl profile's config
    (flags: e.g. `--experts 2`, `--cross-stitch.positions 1`)."""
    cfg, _ = parse_mtl_config(["--architecture", name, *flags],
                              defaults=dict(load_profile(PROFILE).get("config", {})))
    shape = source_shape(cfg.task_set_args.source, cfg.task_set_args.image_size)
    with isolated_rng(cfg.seed):
        model = build_model(cfg, figure_tasks(n_tasks), shape)
    caption = (f"{name} (hatswap mtl, profile {PROFILE}): backbone {cfg.backbone} ({cfg.pooling} pooling), "
               f"{cfg.shared_layers} shared layers × {cfg.shared_width}, task layers {list(cfg.task_layers)}, "
               f"{n_tasks} binary task heads; input {shape[0]}×{shape[1]}×{shape[2]}")
    return ModelDrawing(name, model, shape, caption, depth=3)


def architecture_names() -> list[str]:
    return ARCHITECTURES.names()
