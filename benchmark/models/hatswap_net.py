"""The Hat Swap network (seed 000): a backbone, shared hidden layers, one output head per task.

forward(x, task_labels) routes every sample through its own task's head, so mixed-task batches (joint training,
replay) are handled per sample. Output: B × max_width logits; the columns past a task's own width are -inf, so
softmax, cross-entropy and argmax over a row equal those over the task's own logits (Avalanche's MultiTaskModule
pads with 0 instead, which silently changes all three when heads differ in width).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.dense.kinds import is_dense
from benchmark.distill import kd_loss
from benchmark.models.backbone_training import apply_last_k
from benchmark.models.dense_net import DenseHatSwapNet
from benchmark.models.feature_maps import as_feature_map
from benchmark.models.trunk import SharedTrunkNet
from benchmark.registry import BACKBONES


class HatSwapNet(SharedTrunkNet):
    PAD = float("-inf")  # softmax, cross-entropy and argmax over a row = over the task's own logits

    def __init__(self, backbone: nn.Module, feat_dim: int, hidden: tuple[int, ...], dropout: float,
                 head_dims: list[int], frozen_backbone: bool = False):
        super().__init__()
        self.backbone, self.frozen_backbone = backbone, frozen_backbone
        layers, width = [], feat_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.shared = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(width, d) for d in head_dims)
        self.head_dims = list(head_dims)
        if frozen_backbone:
            self.backbone.requires_grad_(False)

    def distill(self, task: int, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """LwF's term for one old task: T²·KL on its logits (strategies/lwf.py)."""
        return kd_loss(student, teacher, temperature)


def build_model(cfg, tasks, image_size: int, in_chans: int) -> tuple[HatSwapNet, dict]:
    """From the run config and the stream's task specs → (model, identity recorded in config.json)."""
    entry = BACKBONES.get(cfg.backbone)
    backbone, feat_dim, identity = entry.build(cfg.backbone_args, image_size=image_size, in_chans=in_chans,
                                               weights=cfg.backbone_weights)
    frozen = cfg.backbone_mode == "frozen"
    if is_dense(tasks):  # the dense suite: heads read feature maps (--hidden unused)
        model = DenseHatSwapNet(as_feature_map(backbone, cfg.backbone), tasks, frozen_backbone=frozen)
    else:
        model = HatSwapNet(backbone, feat_dim, cfg.hidden, cfg.dropout, [t.n_outputs for t in tasks],
                           frozen_backbone=frozen)
    if cfg.backbone_mode == "last-k":
        apply_last_k(model.backbone, cfg.last_k)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if identity["weights"] == "random init":
        identity = identity | {"weights": f"random init (torch seed {cfg.seed})"}
    mode = f"last-{cfg.last_k}" if cfg.backbone_mode == "last-k" else cfg.backbone_mode
    return model, identity | {"name": cfg.backbone, "mode": mode, "params": n_params, "trainable_params": n_train}
