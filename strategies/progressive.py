"""Progressive neural networks (Rusu et al. 2016) as a continual-learning strategy: one column per task.

The Hat Swap network's backbone + shared layers become column 0; every task gets its own copy (same initial
weights) with linear lateral adapters from all earlier columns' layer below, and keeps its own head:

    h_t^j = ReLU( W_t^j h_t^{j−1} + Σ_{s<t} U_{t,s}^j sg(h_s^{j−1}) )      (benchmark/models/progressive_columns.py)

A sample of task t is routed through columns 0..t and head t. The stop-gradient sg means training task t never
changes columns s < t or their heads, so once learnt a task's outputs never change: forgetting = BWT = 0 by
construction (a test checks it), paid for with T columns (parameters and compute grow linearly with the tasks).
On the dense suite the columns are copies of the feature-map backbone + shared conv (`ProgressiveMaps`).
"""

from __future__ import annotations

import copy

import torch
from avalanche.models import MultiTaskModule
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from benchmark.models.contract import MultiHeadModel
from benchmark.models.layers import TokenBackbone
from benchmark.models.progressive_columns import ProgressiveColumns
from benchmark.models.trunk import route
from benchmark.registry import STRATEGIES


class ProgressiveVectors(MultiTaskModule):
    """Columns for heads that read feature vectors (the binary-task stream): copies of backbone + shared MLP."""

    def __init__(self, base: MultiHeadModel):
        super().__init__()
        linears = [m for m in base.shared if isinstance(m, nn.Linear)]
        dropout = next((m.p for m in base.shared if isinstance(m, nn.Dropout)), 0.0)
        self.frozen_backbone = base.frozen_backbone
        self.columns = ProgressiveColumns(
            len(base.heads),
            lambda: TokenBackbone(copy.deepcopy(base.backbone), linears[0].in_features, pooled_body=True),
            [m.out_features for m in linears], dropout, "each")
        self.heads, self.head_dims = base.heads, list(base.head_dims)

    @property
    def column_backbones(self) -> nn.ModuleList:
        return self.columns.backbones

    @property
    def compute_dtype(self) -> torch.dtype:  # inputs are cast to it, as the base network does
        return next(self.heads.parameters()).dtype

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:
            for b in self.columns.backbones:
                b.eval()
        return self

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        upto = task_labels if isinstance(task_labels, int) else int(task_labels.max())
        reps = self.columns(x.to(self.compute_dtype), upto=upto)
        return route(task_labels, reps[0], self.head_dims, float("-inf"), lambda t, mask: self.heads[t](reps[t][mask]))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads[task_label](self.columns(x.to(self.compute_dtype), upto=task_label)[task_label])


class ProgressiveMaps(MultiTaskModule):
    """For heads that read feature maps (the dense suite): column t = its own copy of backbone + shared 3×3 conv,
    and the shared conv of column t reads its backbone's map plus a 1×1-conv lateral adapter of every earlier
    backbone's map:

        f_t = shared_t( backbone_t(x) + Σ_{s<t} U_{t,s} sg(backbone_s(x)) ),   output = head_t(f_t)

    An earlier column used as a lateral source runs in eval mode without gradients, so neither its weights nor
    its normalisation statistics move: forgetting is 0 by construction, as for the binary stream."""

    def __init__(self, base):
        super().__init__()
        n = len(base.heads)
        self.frozen_backbone = base.frozen_backbone
        self.backbones = nn.ModuleList(copy.deepcopy(base.backbone) for _ in range(n))
        self.shared = nn.ModuleList(copy.deepcopy(base.shared) for _ in range(n))
        c = base.backbone.out_channels
        self.laterals = nn.ModuleList(nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for _ in range(t)) for t in range(n))
        self.heads, self.head_dims = base.heads, list(base.head_dims)

    @property
    def column_backbones(self) -> nn.ModuleList:
        return self.backbones

    @property
    def compute_dtype(self) -> torch.dtype:
        return next(self.heads.parameters()).dtype

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone:
            for b in self.backbones:
                b.eval()
        return self

    def _source(self, s: int, x: torch.Tensor) -> torch.Tensor:
        was = self.backbones[s].training
        self.backbones[s].eval()
        with torch.no_grad():
            out = self.backbones[s](x)
        self.backbones[s].train(was)
        return out

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        t, x = task_label, x.to(self.compute_dtype)
        pre = self.backbones[t](x) + sum(self.laterals[t][s](self._source(s, x)) for s in range(t))
        return self.heads[t](self.shared[t](pre)).flatten(1)

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        x = x.to(self.compute_dtype)
        return route(task_labels, x, self.head_dims, 0.0, lambda t, mask: self.forward_single_task(x[mask], t))


@STRATEGIES.register("progressive", needs_hidden=True, scenarios=("task-il",))
def build_progressive(cfg=None, plugins=(), *, model: MultiHeadModel, optimizer: torch.optim.Optimizer,
                      **template_kwargs) -> SupervisedTemplate:
    net = COLUMNS[model.feature_form](model)
    opt = regroup(optimizer, model, net)
    return SupervisedTemplate(model=net, optimizer=opt, plugins=list(plugins), **template_kwargs)


COLUMNS = {"vector": ProgressiveVectors, "map": ProgressiveMaps}  # by the model's feature form


def regroup(optimizer: torch.optim.Optimizer, model, net) -> torch.optim.Optimizer:
    """The caller's optimizer (built over `model`) rebuilt over the columns' parameters: same class, and each
    parameter group's own settings (lr, weight decay, betas...): the backbone copies take those of the group that
    held `model.backbone`, everything else those of the other group (benchmark/models/backbone_training.py)."""
    base_backbone = {id(p) for p in model.backbone.parameters()}
    settings = {any(id(p) in base_backbone for p in g["params"]): {k: v for k, v in g.items() if k != "params"}
                for g in optimizer.param_groups}
    column_backbones = {id(p) for p in net.column_backbones.parameters()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    groups = [{**settings.get(in_backbone, settings.get(False, settings.get(True))),
               "params": [p for p in trainable if (id(p) in column_backbones) == in_backbone]}
              for in_backbone in (True, False)]
    return type(optimizer)([g for g in groups if g["params"]])
