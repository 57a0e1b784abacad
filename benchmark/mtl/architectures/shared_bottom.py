"""Hard parameter sharing (Caruana 1997): backbone → shared MLP trunk → the same representation for every task.

x → tokens B×N×D → mean over tokens B×D → trunk B×shared_layers[-1], read by every task head.
"""

from __future__ import annotations

from benchmark.models.layers import linear_layers, mlp
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


class SharedBottom(Architecture):
    def __init__(self, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        self.trunk = mlp(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at, spec.activation)
        self.out_dim = spec.shared_layers[-1]

    def forward(self, x):
        z = self.trunk(self.backbone.pooled(self.backbone(x)))
        return {t: z for t in self.tasks}

    def shared_parameters(self):
        return list(self.parameters())

    def last_shared_parameters(self):
        return list(linear_layers(self.trunk)[-1].parameters())


@ARCHITECTURES.register("shared-bottom", aliases=("shared_bottom",))
def build(cfg, spec: ArchSpec, make_backbone: BackboneFactory) -> SharedBottom:
    return SharedBottom(spec, make_backbone)
