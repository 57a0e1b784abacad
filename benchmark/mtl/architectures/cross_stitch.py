"""Cross-stitch networks (Misra et al. 2016, "Cross-stitch Networks for Multi-task Learning").

One column (an MLP of `shared_layers`) per task on the shared backbone's pooled features B×D; after layer j a
cross-stitch unit mixes the columns' activations with a learnt T×T matrix α_j:

    h̃_t^j = Σ_s α_j[t, s] · h_s^j          (h_s^j: B×w_j, column s after layer j)

after every layer by default, or after the layers listed in `positions` (1-based: `--cross-stitch.positions 1,2`
with 3 layers mixes after the first two, as Misra et al. place units after pool1, pool2, pool5, fc6, fc7 and not
after the output layer; the multi-task toolkit's `cross_stitch_positions=[1, 2]`). Column layers after the last unit
reach only their own task, so they are not shared parameters.

α_j starts at α_S = 0.9 on the diagonal and (1 − α_S)/(T − 1) elsewhere (Misra's (0.9, 0.1) for T = 2), so each
column starts mostly its own. With α = I the columns are independent networks (a test checks it). Unlike the paper,
the backbone itself is shared, not duplicated: T ViTs would multiply the cost by T for the small input sizes here.
Shared parameters (what PCGrad projects): the backbone, every column up to the last unit and every α — each
reaches all tasks via α.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import mlp_blocks
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class CrossStitchConfig:
    alpha_same: float = 0.9  # initial weight of a column's own activations
    # after which layers (1-based) a unit mixes the columns; () = after every one
    positions: tuple[int, ...] = field(default=(), metadata={"keyword": "cross_stitch_positions",
                                                             "nonempty": "a unit after every layer"})

    def __post_init__(self):
        if not 0 <= self.alpha_same <= 1:
            raise UserError(f"--cross-stitch.alpha-same must lie in [0, 1], got {self.alpha_same}")
        if len(set(self.positions)) != len(self.positions) or any(p < 1 for p in self.positions):
            raise UserError(f"--cross-stitch.positions takes distinct layer numbers from 1 (e.g. 1,2), got "
                            f"{list(self.positions)}")

    def layers_mixed(self, n_layers: int) -> tuple[int, ...]:
        """0-based indices of the layers followed by a cross-stitch unit."""
        if too_deep := [p for p in self.positions if p > n_layers]:
            raise UserError(f"cross-stitch positions {too_deep} exceed the {n_layers} shared layers (positions are "
                            f"1-based layer numbers)")
        return tuple(sorted(p - 1 for p in self.positions)) if self.positions else tuple(range(n_layers))


def initial_alpha(T: int, alpha_same: float) -> torch.Tensor:
    if T == 1:
        return torch.ones(1, 1)
    return torch.full((T, T), (1 - alpha_same) / (T - 1)).fill_diagonal_(alpha_same)


class CrossStitch(Architecture):
    def __init__(self, cfg: CrossStitchConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        self.columns = nn.ModuleList(mlp_blocks(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at,
                                                spec.activation) for _ in spec.tasks)
        T = len(spec.tasks)
        self.mixed = cfg.layers_mixed(len(spec.shared_layers))
        self.alphas = nn.ParameterList(nn.Parameter(initial_alpha(T, cfg.alpha_same)) for _ in self.mixed)
        self.out_dim = spec.shared_layers[-1]

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        h = torch.stack([z] * len(self.tasks))  # T×B×D
        units = dict(zip(self.mixed, self.alphas, strict=True))
        for j in range(len(self.columns[0])):
            h = torch.stack([col[j](h[t]) for t, col in enumerate(self.columns)])
            if j in units:
                h = torch.einsum("ts,sbw->tbw", units[j], h)
        return {t: h[k] for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        # Every column layer up to the last unit reaches every task: column s's layer j feeds task t through
        # α[t, s] (off-diagonal ≠ 0), so PCGrad must project the columns too, not only the backbone and α.
        last = self.mixed[-1]
        columns = [p for col in self.columns for j, block in enumerate(col) if j <= last for p in block.parameters()]
        return [*self.backbone.parameters(), *columns, *self.alphas]

    def last_shared_parameters(self):
        return self.backbone.last_parameters() or [self.alphas[-1]]


@ARCHITECTURES.register("cross-stitch", config_cls=CrossStitchConfig, aliases=("cross_stitch",))
def build(cfg: CrossStitchConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> CrossStitch:
    return CrossStitch(cfg or CrossStitchConfig(), spec, make_backbone)
