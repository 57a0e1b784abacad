"""`MultiTaskModel`'s task heads: every architecture gives each task a vector (B×w); a task's head turns it into the
task kind's output, flattened (B × output_len, the one output convention of benchmark/tasks/kind.py).

    reads "vector"  rep → MLP(task_layers) → kind.make_head(spec, w')
    reads "map"     rep → LayerNorm(w) → MLP(task_layers) → MapDecoder: Linear(w', c·g·g), activation (none
                        when g = 1), reshape B×c×g×g → kind.make_head(spec, c) → flatten

A map-reading head is deeper than a vector one (MLP, decoder, the kind's own layer), so it normalises its input
(LayerNorm) and starts its MLP and decoder at He initialisation (zero biases): with torch's default init the
input-dependent part of the signal shrank about 70-fold from the backbone's map to the logits (per-sample std 0.33 →
0.005 on the mtl-dense profile's trunk), so classification sat at the class prior for epochs; and at the profile's
former lr 0.005 Adam's first steps killed most ReLU units of the trunk and head for good (logits then constant).
Classification's one-cell map is linear: its 16-unit ReLU bottleneck in front of the linear head was among the
first to die (docs/multi-task.md, the mtl-dense profile: the diagnosis, and MTAN, which these heads do not suit).

A kind that reads a feature map (the dense suite's segmentation, detection and classification: `TaskKind.reads`)
keeps its own head, unchanged (segmentation: 1×1 conv + bilinear upsampling to S×S; detection: 1×1 conv on the
G×G grid; classification: global average pooling + linear); the task-specific decoder in front of it gives it a map
with c = MAP_CHANNELS channels on g×g cells, g = the kind's own grid where its parameters declare one (detection's G:
one cell per grid cell, no pooling), 1 where its output has no positions (classification) and MAP_GRID otherwise
(segmentation: the small CNN's stride-8 map of a 64 px image, the map the continual suite's heads read, upsampled by
the head). So every architecture and weighting runs unchanged on dense tasks: they share and
weight vectors, and the layout a decoder needs must pass through the trunk's vector (use `--pooling flatten`: the
mean over positions discards where things are).

Cost per map-reading task: w'·c·g² + c·g² parameters and multiply-adds per image beside the kind's head (w' = 32,
c = 16: 33.8 k for g = 8, segmentation and detection on 64 px; 528 for classification's g = 1). Why not decode from
the backbone's map directly: then the architectures (which share, gate, stitch and attend over vectors) would not
stand between the backbone and the dense heads, and there would be nothing multi-task to compare. The price: where
things are must pass through each task's vector, which a small trunk trained from scratch learns slowly
(docs/multi-task.md, dense multi-task).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.models.layers import activation_layer, linear_layers, mlp
from benchmark.tasks import kind_of

MAP_CHANNELS = 16
MAP_GRID = 8


class MapDecoder(nn.Module):
    """B×w → B×c×g×g: one linear layer and the activation (a feature map as a backbone's, non-negative with ReLU);
    activation None: linear (a one-cell map, which the kind's head reads as a vector: no ReLU bottleneck to die)."""

    def __init__(self, width: int, channels: int, grid: int, activation: str | None = "relu"):
        super().__init__()
        self.channels, self.grid = channels, grid
        self.linear = nn.Linear(width, channels * grid * grid)
        self.act = nn.Identity() if activation is None else activation_layer(activation)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(v)).reshape(v.shape[0], self.channels, self.grid, self.grid)


def map_grid(spec) -> int:
    """The decoded map's side: the kind's grid where its parameters declare one; 1 for an output without positions
    (classification: its head's global average pooling then reads one cell, so the decoder is one more hidden layer,
    not 64 positions averaged, which shrinks the logits and their gradients 8-fold at initialisation); else
    MAP_GRID."""
    if hasattr(spec.params, "grid"):
        return int(spec.params.grid)
    return 1 if len(kind_of(spec).shape(spec)) == 1 else MAP_GRID


class FanInScale(nn.Module):
    """x / tokens, a constant: in front of a map-reading head's first layer when its input is `tokens` token vectors
    flattened (MTAN's attended map, --pooling flatten), that layer's weights starting `tokens` times larger, so its
    output at initialisation is unchanged. What changes is Adam's step: it moves each weight by about lr whatever
    the gradient's scale, so a pre-activation moves by up to lr·Σ|x_i|, which grows with the fan-in; after the
    LayerNorm (|x_i| ≈ 0.8) a 64 × 128 = 8192-wide input moved it 64 times as far per step as the other trunks'
    128-wide vector, and Adam at 2e-3 drove every ReLU of MTAN's head below zero for good within ~300 steps
    (classification stayed at the class prior). Dividing the input by `tokens` gives that layer the step of a
    one-token (trunk-width) input: Adam's lr scaled by 1/fan-in, as muP prescribes for a wider hidden layer."""

    def __init__(self, tokens: int):
        super().__init__()
        self.tokens = tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.tokens


def task_head(spec, in_width: int, hidden: tuple[int, ...], dropout: float, dropout_at: str,
              activation: str, tokens: int = 1) -> nn.Sequential:
    """The head of task `spec` on the architecture's B×in_width vector. Heads get dropout only in 'each' mode
    ("after each layer"); 'last' means one dropout layer, the trunk's. A map-reading head: LayerNorm on its input,
    He init of its MLP and decoder, a linear decoder for a one-cell map (the module docstring says why); on an input
    of `tokens` > 1 flattened token vectors (MTAN's), a FanInScale after the LayerNorm (its docstring says why)."""
    body = mlp(in_width, hidden, dropout, "each" if dropout_at == "each" else "none", activation)
    width = ([in_width, *hidden])[-1]
    kind = kind_of(spec)
    if kind.reads == "vector":
        return nn.Sequential(body, kind.make_head(spec, width))
    grid = map_grid(spec)
    decoder = MapDecoder(width, MAP_CHANNELS, grid, activation if grid > 1 else None)
    layers = [*linear_layers(body), decoder.linear]
    for layer in layers:  # He init: the signal keeps its scale through the head
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    scale = [FanInScale(tokens)] if tokens > 1 else []
    if scale:
        with torch.no_grad():
            layers[0].weight.mul_(tokens)
    return nn.Sequential(nn.LayerNorm(in_width), *scale, body, decoder, kind.make_head(spec, MAP_CHANNELS),
                         nn.Flatten(1))
