"""Hard parameter sharing (Caruana 1997): backbone → shared MLP trunk → the same representation for every task.

x → tokens B×N×D → pooled B×D (mean over tokens, or flattened: B×N·D) → trunk B×shared_layers[-1], read by every
task head. With no shared layer (`shared_layers=0`) the trunk is the identity: the backbone is the whole shared
network and every head reads its pooled features, B×D (a conv stack's flattened map: the multi-task experiments'
"3-layered shared Network" of convolutions, `--small_cnn.channels` its depth).
"""

from __future__ import annotations

from benchmark.errors import UserError
from benchmark.models.layers import linear_layers, mlp
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


class SharedBottom(Architecture):
    def __init__(self, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        if not spec.shared_layers and self.backbone.dim is None:
            raise UserError("shared_layers=0 sizes the task heads by the input width: give in_features (or a backbone)")
        self.trunk = mlp(self.backbone.dim, spec.shared_layers, spec.dropout, spec.dropout_at, spec.activation)
        self.out_dim = spec.shared_layers[-1] if spec.shared_layers else self.backbone.dim

    def forward(self, x):
        z = self.trunk(self.backbone.pooled(self.backbone(x)))
        return {t: z for t in self.tasks}

    def shared_parameters(self):
        return list(self.parameters())

    def last_shared_parameters(self):
        layers = linear_layers(self.trunk)
        return list(layers[-1].parameters()) if layers else self.backbone.last_parameters()


@ARCHITECTURES.register("shared-bottom", aliases=("shared_bottom",), no_shared_layers=True)
def build(cfg, spec: ArchSpec, make_backbone: BackboneFactory) -> SharedBottom:
    return SharedBottom(spec, make_backbone)
