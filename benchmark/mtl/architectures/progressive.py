"""Progressive neural networks (Rusu et al. 2016, "Progressive Neural Networks").

One column per task, each with its own backbone and MLP of `shared_layers`; column t also reads every earlier
column's activations of the layer below through lateral adapters:

    h_t^j = σ( W_t^j h_t^{j−1} + Σ_{s<t} U_{t,s}^j sg(h_s^{j−1}) ),    h_t^0 = pooled backbone_t(x)  (B×D)

sg = stop-gradient: a later task's loss never reaches an earlier column, so when tasks are learnt one after another
the old columns are frozen and forgetting is 0 by construction (in joint training each column is trained by its own
task only, and transfer flows through the adapters). The paper's adapters are small MLPs (U σ(V α h)); here U is a
single linear map. Nothing is shared, so gradient-based weightings (PCGrad, GradNorm) have nothing to act on.
"""

from __future__ import annotations

from benchmark.models.progressive_columns import ProgressiveColumns
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


class Progressive(Architecture):
    def __init__(self, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.net = ProgressiveColumns(len(spec.tasks), make_backbone, spec.shared_layers, spec.dropout,
                                      spec.dropout_at, spec.activation)
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
