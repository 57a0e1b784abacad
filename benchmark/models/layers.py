"""Building blocks of multi-column and multi-task networks: the backbone as a token map, the dropout-aware MLP."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import tokens

DROPOUT_AT = ("none", "last", "each")  # no dropout / a single dropout layer / dropout after each layer
POOLING = ("mean", "flatten")  # how a token map becomes the vector an MLP trunk reads (TokenBackbone.pooled)
# The non-linearity after each hidden layer of the MLPs below (shared trunks, columns, experts, task heads).
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU,
               "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}


class TokenBackbone(nn.Module):
    """A backbone → its features as tokens, B×N×D.

    - a registered backbone (benchmark/models/backbone.py): its "tokens" view — a ViT's patch tokens after the
      final norm (prefix tokens dropped), N = gh·gw; a CNN's map positions, N = h·w;
    - None: the input is already a feature vector B×F, taken as one token (N = 1);
    - `pooled_body=True`: a backbone whose own forward already pools (the Hat Swap network's, B×D), one token.
    With no backbone, `dim=None` means "the input width, known at the first forward": `dim` stays None and the
    layers that read it are `nn.LazyLinear` (`linear` below).
    `pooled(tokens)` → the vector that pooled-feature architectures read, B×`dim`: with pooling 'mean' the mean over
    tokens (B×D, global average pooling: where things are is lost), with 'flatten' the tokens concatenated in order
    (B×N·D: the layout kept, what a pixel decoder or a position-dependent classifier needs).
    """

    def __init__(self, backbone: nn.Module | None, dim: int, n_tokens: int = 1, pooling: str = "mean",
                 pooled_body: bool = False):
        super().__init__()
        self.pooled_body = pooled_body
        if pooling not in POOLING:
            raise UserError(f"pooling must be one of {POOLING}, got {pooling!r}")
        self.body, self.token_dim, self.n_tokens, self.pooling = backbone, dim, n_tokens, pooling
        self.dim = self.pooled_width(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.body is None:
            return x.flatten(1).unsqueeze(1)
        if self.pooled_body:
            return self.body(x).flatten(1).unsqueeze(1)
        return tokens(self.body, x)

    def pooled_width(self, width: int | None) -> int | None:
        """Width of `pooled` applied to B×N×width tokens (MTAN pools its own attended tokens the same way); None
        while the input width is unknown (vector input sized at the first forward)."""
        if width is None:
            return None
        return width * self.n_tokens if self.pooling == "flatten" else width

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.flatten(1) if self.pooling == "flatten" else tokens.mean(dim=1)

    def last_parameters(self) -> list[nn.Parameter]:
        """The backbone's final layer with weights: what every task's gradient passes through last."""
        if self.body is None:
            return []
        layers = [m for m in self.body.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return list(layers[-1].parameters()) if layers else []


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def linear(in_dim: int | None, out_dim: int, bias: bool = True) -> nn.Module:
    """nn.Linear, or nn.LazyLinear when in_dim is None: its weight is an UninitializedParameter until the first
    forward, which materialises it in place (the same Parameter object), so an optimizer built earlier trains it."""
    return nn.LazyLinear(out_dim, bias=bias) if in_dim is None else nn.Linear(in_dim, out_dim, bias=bias)


def mlp_blocks(in_dim: int | None, widths, dropout: float = 0.0, dropout_at: str = "each",
               activation: str = "relu") -> nn.ModuleList:
    """One block per width: Sequential(Linear, activation[, Dropout]); block[0] is the Linear (architectures that
    add lateral or mixed inputs before the non-linearity use it alone). Dropout(p) after every layer ('each'), only
    after the last ('last'), or never ('none'). in_dim None: the first Linear is lazy (`linear`)."""
    blocks, width = [], in_dim
    for k, w in enumerate(widths):
        blocks.append(nn.Sequential(linear(width, w), *block_tail(k, len(widths), dropout, dropout_at, activation)))
        width = w
    return nn.ModuleList(blocks)


def block_tail(k: int, n: int, dropout: float, dropout_at: str, activation: str) -> list[nn.Module]:
    """What follows hidden layer k of n: the activation, then Dropout(p) after every layer ('each'), only after the
    last ('last'), or never ('none')."""
    tail = [activation_layer(activation)]
    if dropout > 0 and (dropout_at == "each" or (dropout_at == "last" and k == n - 1)):
        tail.append(nn.Dropout(dropout))
    return tail


def mlp(in_dim: int | None, widths, dropout: float = 0.0, dropout_at: str = "each",
        activation: str = "relu") -> nn.Sequential:
    return nn.Sequential(*mlp_blocks(in_dim, widths, dropout, dropout_at, activation))


def linear_layers(seq: nn.Module) -> list[nn.Linear]:
    return [m for m in seq.modules() if isinstance(m, nn.Linear)]  # nn.LazyLinear is an nn.Linear too
