"""Progressive neural networks (Rusu et al. 2016, "Progressive Neural Networks").

One column per task, each with its own backbone and MLP of `shared_layers`; column t also reads every earlier
column's activations of the layer below through lateral adapters:

    h_t^j = ReLU( W_t^j h_t^{j−1} + Σ_{s<t} U_{t,s}^j sg(h_s^{j−1}) ),    h_t^0 = pooled backbone_t(x)  (B×D)

sg = stop-gradient: a later task's loss never reaches an earlier column, so when tasks are learnt one after another
the old columns are frozen and forgetting is 0 by construction (in joint training each column is trained by its own
task only, and transfer flows through the adapters). The paper's adapters are small MLPs (U σ(V α h)); here U is a
single linear map. Nothing is shared, so gradient-based weightings (PCGrad, GradNorm) have nothing to act on.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.layers import mlp_blocks
from benchmark.mtl.registries import ARCHITECTURES


class ProgressiveColumns(nn.Module):
    """The columns and adapters only, on given backbones: shared by the MTL architecture and the CL strategy."""

    def __init__(self, n_columns: int, make_backbone, widths, dropout: float = 0.0, dropout_at: str = "each"):
        super().__init__()
        self.backbones = nn.ModuleList(make_backbone() for _ in range(n_columns))
        dim = self.backbones[0].dim
        self.columns = nn.ModuleList(mlp_blocks(dim, widths, dropout, dropout_at) for _ in range(n_columns))
        ins = [dim, *widths[:-1]]
        self.laterals = nn.ModuleList(  # laterals[t][j][s]: column s (< t), layer j−1 → column t, layer j
            nn.ModuleList(nn.ModuleList(nn.Linear(ins[j], w, bias=False) for _ in range(t)) for j, w in
                          enumerate(widths)) for t in range(n_columns))
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """→ [B×out_dim] for columns 0..upto (default: all)."""
        n = len(self.columns) if upto is None else upto + 1
        prev = []  # prev[s] = column s's activation of the layer below
        for t in range(n):
            tokens = self.backbones[t](x)
            prev.append(self.backbones[t].pooled(tokens))
        for j in range(len(self.columns[0])):
            cur = []
            for t in range(n):
                block = self.columns[t][j]
                pre = block[0](prev[t]) + sum(self.laterals[t][j][s](prev[s].detach()) for s in range(t))
                cur.append(block[1:](pre))
            prev = cur
        return prev


class Progressive(Architecture):
    def __init__(self, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.net = ProgressiveColumns(len(spec.tasks), make_backbone, spec.shared_layers, spec.dropout,
                                      spec.dropout_at)
        self.out_dim = self.net.out_dim

    def forward(self, x):
        return dict(zip(self.tasks, self.net(x), strict=True))

    def shared_parameters(self):
        return []

    def last_shared_parameters(self):
        return []


@ARCHITECTURES.register("progressive")
def build(cfg, spec: ArchSpec, make_backbone: BackboneFactory) -> Progressive:
    return Progressive(spec, make_backbone)
