"""The Hat Swap network: a backbone, a shared trunk, one head per task, each head built by its task's kind.

    backbone   images → B×D features, or B×C×h×w maps (a CNN's map, a ViT's patch tokens on their grid: the
               backbone's "map" view, benchmark/models/backbone.py) when the tasks' kinds read maps (the dense suite)
    shared     the trunk for that feature form (benchmark/models/trunk.py); LwF's hook and every head read it
    heads      `kind.make_head(spec, width)` per task (benchmark/tasks/kinds)

forward(x, task_labels) routes every sample through its own task's head, so mixed-task batches (joint training,
replay) are handled per sample. Output: B × max_width, each row its task's flattened head output, the columns past
its width filled with the kind's `pad` (-inf for logits, 0 for packed rows). The model contract it implements:
benchmark/models/contract.py.
"""

from __future__ import annotations

import torch
from avalanche.models import MultiTaskModule
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone_training import apply_last_k
from benchmark.models.contract import BackboneModes
from benchmark.models.trunk import map_trunk, vector_trunk
from benchmark.registry import BACKBONES, MODELS
from benchmark.tasks import kind_of


def common_attribute(tasks, attribute: str):
    """The one value of the tasks' kinds' `attribute` (one network reads one feature form, pads one way)."""
    values = {getattr(kind_of(t), attribute) for t in tasks}
    if len(values) != 1:
        raise UserError(f"tasks of kinds {sorted({t.kind for t in tasks})} differ in {attribute!r} "
                        f"({sorted(map(str, values))}); one network needs one")
    return values.pop()


class HatSwapNet(BackboneModes, MultiTaskModule):
    # Set by benchmark.runtime.device on CUDA (bf16). Every public entry point (forward, features, head) autocasts and
    # returns the compute dtype (torch's default when the net was built: float32, or float64 under --dtype float64),
    # so callers (losses, LwF's hook on `shared`) never mix dtypes; inputs (images, cached features) are cast to it.
    autocast_dtype: torch.dtype | None = None

    def __init__(self, backbone: nn.Module, shared: nn.Module, width: int, tasks: list,
                 frozen_backbone: bool = False, heads: nn.ModuleList | None = None, feat_dim: int | None = None):
        super().__init__()
        self.backbone, self.shared, self.frozen_backbone, self.tasks = backbone, shared, frozen_backbone, list(tasks)
        self.feat_dim = feat_dim  # the backbone's output width, where it gives vectors (a training-free classifier's)
        self.width, self.feature_form = width, common_attribute(tasks, "reads")
        self.pad = common_attribute(tasks, "pad")
        self.heads = heads if heads is not None else nn.ModuleList(kind_of(t).make_head(t, width) for t in tasks)
        self.head_dims = [t.n_outputs for t in tasks]
        if frozen_backbone:
            self.backbone.requires_grad_(False)

    def with_backbone(self, backbone: nn.Module) -> HatSwapNet:
        net = HatSwapNet(backbone, self.shared, self.width, self.tasks, self.frozen_backbone, heads=self.heads,
                         feat_dim=self.feat_dim)
        net.autocast_dtype = self.autocast_dtype
        return net

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the network's parameters (float32; float64 under --dtype float64)."""
        return next(self.heads.parameters()).dtype

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            return self.shared(self.backbone(x.to(self.compute_dtype))).to(self.compute_dtype)

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        with self._autocast(feats):
            return self.heads[task](feats).to(self.compute_dtype).flatten(1)

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor | dict[int, torch.Tensor]:
        return self.routed(x, task_labels, self.pad)


def build_net(backbone: nn.Module, tasks: list, feat_dim: int | None = None, hidden: tuple[int, ...] = (),
              dropout: float = 0.0, frozen_backbone: bool = False) -> HatSwapNet:
    """The trunk for the tasks' feature form: "vector" reads `feat_dim`-wide features through `hidden` layers;
    "map" reads `backbone.out_channels` maps (`hidden` unused): the backbone's "map" view (BuiltBackbone.view)."""
    if common_attribute(tasks, "reads") == "map":
        net = HatSwapNet(backbone, *map_trunk(backbone.out_channels), tasks, frozen_backbone)
        # NHWC weights make every convolution run channels-last (oneDNN on the CPU, tensor cores on a GPU): a
        # training step of the offline dense profile's CNN took 1.15–1.25× less time on 2 idle CPU cores
        # (measured side by side). Inputs stay NCHW; the first convolution converts them.
        return net.to(memory_format=torch.channels_last)
    return HatSwapNet(backbone, *vector_trunk(feat_dim, hidden, dropout), tasks, frozen_backbone, feat_dim=feat_dim)


@MODELS.register("hatswap_net", hidden_layers=True, backbone_features=True)  # DEFAULT_MODEL, the Hat Swap network
def build_model(cfg, tasks, image_size: int, in_chans: int) -> tuple[HatSwapNet, dict]:
    """From the run config and the stream's task specs → (model, identity recorded in config.json)."""
    built = BACKBONES.get(cfg.backbone).build(cfg.backbone_args, image_size=image_size, in_chans=in_chans,
                                              weights=cfg.backbone_weights)
    model = build_net(built.view(common_attribute(tasks, "reads")), tasks, built.width, cfg.hidden, cfg.dropout,
                      frozen_backbone=cfg.backbone_mode == "frozen")
    if cfg.backbone_mode == "last-k":
        apply_last_k(built.module, cfg.last_k)
    identity = built.identity
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if identity["weights"] == "random init":
        identity = identity | {"weights": f"random init (torch seed {cfg.seed})"}
    mode = f"last-{cfg.last_k}" if cfg.backbone_mode == "last-k" else cfg.backbone_mode
    return model, identity | {"name": cfg.backbone, "mode": mode, "params": n_params, "trainable_params": n_train}
