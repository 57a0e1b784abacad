"""Continual multi-task learning: every multi-task architecture as a model family of `hatswap run`.

`register_models()` puts each architecture of ARCHITECTURES into the core's MODELS registry (the core never imports
this package: the composition root, benchmark/cli.py, calls it, and hands it to Ray workers as their setup), so

    hatswap run --architecture mmoe --strategy ewc --hidden 64     # --mmoe.gate-layers 16: the architecture's knobs

trains a `MultiTaskModel` (the toolkit's, benchmark/mtl/model.py) through the continual loop: the stream's tasks are
its heads, `--hidden` its shared layers' widths (per expert for MMoE, per column for cross-stitch), `--dropout` after
each of them, the heads read the architecture's representation directly (no task layers), equal weighting (the
strategy's loss replaces the toolkit's). Every strategy runs on it but those that rebuild the Hat Swap network's
hidden layers (progressive: ModelMeta.hidden_layers), refused in one line; so is an architecture whose training
loss carries a regulariser of its own (group lasso's ℓ2,1), which the strategies' loss would leave out.
"""

from __future__ import annotations

from torch import nn

from benchmark.errors import UserError
from benchmark.mtl.registries import ARCHITECTURES
from benchmark.registry import MODELS
from benchmark.tasks import kind_of


def build_architecture(name: str):
    """The MODELS builder of architecture `name`: (run config, task specs, image_size, in_chans) → (model, identity)."""

    def build(cfg, tasks, image_size: int, in_chans: int):
        from benchmark.models.backbone_training import apply_last_k
        from benchmark.mtl.model import MultiTaskModel

        if not cfg.hidden:
            raise UserError(f"--architecture {name} needs --hidden: the widths of its shared layers (--hidden 128)")
        if maps := sorted({t.kind for t in tasks if kind_of(t).reads != "vector"}):
            raise UserError(f"--architecture {name} heads read vectors; tasks of kind {', '.join(maps)} read feature "
                            f"maps: use --architecture hatswap_net for this stream")
        if cfg.backbone_weights:
            raise UserError(f"--backbone-weights applies to --architecture hatswap_net; {name} builds its backbone "
                            f"from the registry's weights (drop --backbone-weights)")
        model = MultiTaskModel(list(tasks), architecture=name, shared_layers=list(cfg.hidden), task_layers=(),
                               dropout=cfg.dropout, backbone=cfg.backbone, backbone_args=cfg.backbone_args,
                               input_shape=(in_chans, image_size, image_size), architecture_args=cfg.architecture_args)
        if model.arch.penalty() is not None:  # the strategy's loss would silently leave it out
            raise UserError(f"--architecture {name} adds a regulariser to the training loss, which the continual "
                            f"strategies' loss does not carry yet; use another architecture")
        if cfg.backbone_mode == "frozen":
            model.freeze_backbone()
        elif cfg.backbone_mode == "last-k":  # each column's backbone where the architecture has several
            for column in model.backbone if isinstance(model.backbone, nn.ModuleList) else [model.backbone]:
                apply_last_k(column.body, cfg.last_k)
        identity = dict(model.backbone_identity)
        if identity["weights"] == "random init":
            identity["weights"] = f"random init (torch seed {cfg.seed})"
        mode = f"last-{cfg.last_k}" if cfg.backbone_mode == "last-k" else cfg.backbone_mode
        return model, identity | {"mode": mode, "params": sum(p.numel() for p in model.parameters()),
                                  "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}

    return build


def register_models() -> None:
    """Every architecture into MODELS, once (a second call, e.g. a Ray worker's setup in a reused process, is a
    no-op)."""
    if set(ARCHITECTURES.names()) <= set(MODELS.names()):
        return
    for name in ARCHITECTURES.names():
        MODELS.register(name, config_cls=ARCHITECTURES.get(name).config_cls)(build_architecture(name))
