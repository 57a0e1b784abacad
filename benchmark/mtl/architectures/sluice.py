"""Sluice networks (Ruder, Bingel, Augenstein & Søgaard 2019, "Latent Multi-task Architecture Learning", AAAI).

One column (an MLP of `shared_layers`) per task on the shared backbone's pooled features B×D. After layer j every
column's output h_t^j (B×w_j) is split into G equal subspaces h_{t,1}^j … h_{t,G}^j, and a learnt (T·G)×(T·G) matrix
α_j mixes every subspace of every task (cross-stitch is the case G = 1):

    [h̃_{1,1}^j, …, h̃_{T,G}^j]ᵀ = α_j · [h_{1,1}^j, …, h_{T,G}^j]ᵀ        (each entry B×w_j/G)

Task t's representation mixes the (mixed) outputs of every layer with its own learnt layer weights β_t ("β layer
skip": a task may read lower layers directly):

    rep_t = Σ_j β_t[j] · P_j h̃_t^j          (P_j = I where w_j = w_L, as in the paper; else a learnt linear
                                              map w_j → w_L shared by the tasks)

Initialisation: α_j = alpha_same on the diagonal and (1 − alpha_same)/(T·G − 1) elsewhere (as cross-stitch);
β_t = the last layer only, so training starts from a sluice of plain mixing and learns any skip. The paper's
subspace-orthogonality penalty is not used (a regulariser with its own weight to tune; `penalty` is the place for it).
With α = I and β = last layer, the columns are independent networks (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import mlp_blocks
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.architectures.cross_stitch import initial_alpha
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class SluiceConfig:
    subspaces: int = 2  # G, the paper's choice
    alpha_same: float = 0.9  # initial weight of a subspace on itself

    def __post_init__(self):
        if self.subspaces < 1 or not 0 <= self.alpha_same <= 1:
            raise UserError(f"--sluice.subspaces must be ≥ 1 and --sluice.alpha-same in [0, 1], got "
                            f"{self.subspaces}, {self.alpha_same}")


class Sluice(Architecture):
    def __init__(self, cfg: SluiceConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        widths, T, G = spec.shared_layers, len(spec.tasks), cfg.subspaces
        if bad := [w for w in widths if w % G]:
            raise UserError(f"sluice splits every layer into --sluice.subspaces {G} equal parts: widths {bad} of "
                            f"shared_layers {list(widths)} are not divisible by {G}")
        self.tasks, self.G = spec.tasks, G
        self.backbone = make_backbone()
        self.columns = nn.ModuleList(mlp_blocks(self.backbone.dim, widths, spec.dropout, spec.dropout_at,
                                                spec.activation) for _ in spec.tasks)
        self.alphas = nn.ParameterList(nn.Parameter(initial_alpha(T * G, cfg.alpha_same)) for _ in widths)
        last = torch.zeros(len(widths)).index_fill_(0, torch.tensor([len(widths) - 1]), 1.0)
        self.betas = nn.ParameterList(nn.Parameter(last.clone()) for _ in spec.tasks)  # β_t: task t's own
        self.projections = nn.ModuleList(nn.Identity() if w == widths[-1] else nn.Linear(w, widths[-1], bias=False)
                                         for w in widths)
        self.out_dim = widths[-1]

    def mix(self, alpha: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """h: T×B×w → the α-mixed subspaces, T×B×w (subspace g of task t is entry t·G + g)."""
        T, B, w = h.shape
        sub = h.reshape(T, B, self.G, w // self.G).permute(0, 2, 1, 3).reshape(T * self.G, B, w // self.G)
        mixed = torch.einsum("ij,jbw->ibw", alpha, sub)
        return mixed.reshape(T, self.G, B, w // self.G).permute(0, 2, 1, 3).reshape(T, B, w)

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        h, layers = torch.stack([z] * len(self.tasks)), []
        for j, alpha in enumerate(self.alphas):
            h = self.mix(alpha, torch.stack([col[j](h[t]) for t, col in enumerate(self.columns)]))
            layers.append(self.projections[j](h))
        rep = torch.einsum("tj,jtbw->tbw", torch.stack(list(self.betas)), torch.stack(layers))
        return {t: rep[k] for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        # As in cross-stitch, every column reaches every task through α; β is each task's own.
        return [*self.backbone.parameters(), *self.columns.parameters(), *self.alphas, *self.projections.parameters()]

    def last_shared_parameters(self):
        return self.backbone.last_parameters() or [self.alphas[-1]]


@ARCHITECTURES.register("sluice", config_cls=SluiceConfig)
def build(cfg: SluiceConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> Sluice:
    return Sluice(cfg or SluiceConfig(), spec, make_backbone)
