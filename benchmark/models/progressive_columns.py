"""Progressive neural networks' columns (Rusu et al. 2016), shared by the multi-task architecture
(benchmark/mtl/architectures/progressive.py) and the continual-learning strategy (strategies/progressive.py):

    h_t^j = σ( W_t^j h_t^{j−1} + Σ_{s<t} U_{t,s}^j sg(h_s^{j−1}) ),    h_t^0 = pooled backbone_t(x)  (B×D)

σ = the activation (ReLU unless told otherwise).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.models.layers import linear, mlp_blocks


class ProgressiveColumns(nn.Module):
    """The columns and adapters only, on given backbones: shared by the MTL architecture and the CL strategy."""

    def __init__(self, n_columns: int, make_backbone, widths, dropout: float = 0.0, dropout_at: str = "each",
                 activation: str = "relu"):
        super().__init__()
        self.backbones = nn.ModuleList(make_backbone() for _ in range(n_columns))
        dim = self.backbones[0].dim
        self.columns = nn.ModuleList(mlp_blocks(dim, widths, dropout, dropout_at, activation)
                                     for _ in range(n_columns))
        ins = [dim, *widths[:-1]]
        self.laterals = nn.ModuleList(  # laterals[t][j][s]: column s (< t), layer j−1 → column t, layer j
            nn.ModuleList(nn.ModuleList(linear(ins[j], w, bias=False) for _ in range(t)) for j, w in
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
