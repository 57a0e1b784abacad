"""The Hat Swap network (seed 000): a backbone, shared hidden layers, one output head per task.

forward(x, task_labels) routes every sample through its own task's head, so mixed-task batches (joint training,
replay) are handled per sample. Output: B × max_width logits; the columns past a task's own width are -inf, so
softmax, cross-entropy and argmax over a row equal those over the task's own logits (Avalanche's MultiTaskModule
pads with 0 instead, which silently changes all three when heads differ in width).
"""

from __future__ import annotations

import torch
from avalanche.models import MultiTaskModule
from torch import nn

from benchmark.registry import BACKBONES


class HatSwapNet(MultiTaskModule):
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

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:  # a frozen backbone also keeps its dropout/norm statistics fixed
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×hidden[-1]: the shared representation every head reads."""
        return self.shared(self.backbone(x))

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        return self.heads[task](feats)

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        if isinstance(task_labels, int):
            task_labels = torch.full((x.shape[0],), task_labels, device=x.device)
        feats = self.features(x)
        out = feats.new_full((x.shape[0], max(self.head_dims)), float("-inf"))
        for t in torch.unique(task_labels).tolist():
            mask = task_labels == t
            out[mask, : self.head_dims[t]] = self.heads[t](feats[mask])
        return out

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads[task_label](self.features(x))


def build_model(cfg, tasks, image_size: int, in_chans: int) -> tuple[HatSwapNet, dict]:
    """From the run config and the stream's task specs → (model, identity recorded in config.json)."""
    entry = BACKBONES.get(cfg.backbone)
    backbone, feat_dim, identity = entry.build(cfg.backbone_args, image_size=image_size, in_chans=in_chans)
    model = HatSwapNet(backbone, feat_dim, cfg.hidden, cfg.dropout, [t.n_outputs for t in tasks],
                       frozen_backbone=cfg.backbone_mode == "frozen")
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if identity["weights"] == "random init":
        identity = identity | {"weights": f"random init (torch seed {cfg.seed})"}
    return model, identity | {"name": cfg.backbone, "mode": cfg.backbone_mode, "params": n_params,
                              "trainable_params": n_train}
