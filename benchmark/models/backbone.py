"""The backbone contract (timm's), what a registered builder returns, and the one adapter that reads a backbone as a
feature vector, a feature map or a token sequence.

Every `BACKBONES` builder returns a `BuiltBackbone(module, width, identity)` whose module meets `Backbone`:

    forward(x)           B×C×H×W images (the stream's, in [-1, 1]) → B×num_features: what vector heads read
    forward_features(x)  the same images, unpooled: B×(P+N)×D tokens (`feature_layout` "tokens", a ViT: P prefix
                         tokens (class, registers) then N = gh·gw patch tokens, row-major over the patch grid) or a
                         B×D×h×w map ("map", a CNN)
    num_features         D; num_prefix_tokens P (0 for a map)
    feature_layout       "tokens" | "map": declared by the module's class, never guessed from its attributes

A "tokens" backbone is a `ViTBackbone`: it also exposes timm's `patch_embed`, `blocks` and `norm`, `patch_grid(x)`
and `embed(x)`, the sequence the first block reads, so that forward_features(x) = norm(blocks(embed(x))). That is
the hook prompt methods (VPT, L2P, …) use: `forward_with_prompts` puts learnt tokens after the prefix ones. A method
that needs tokens refuses any other backbone in one line: `require_tokens(backbone, "--strategy l2p")`.

Views (`BuiltBackbone.view(form)`, `BackboneView`), all derived from the declared contract:
    "vector"  the module itself (its forward)
    "map"     B×D×h×w: a map as is; a ViT's patch tokens (prefix dropped) laid out on the patch grid
    "tokens"  B×N×D: a ViT's patch tokens (prefix dropped); a map's h·w positions, row-major
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from benchmark.errors import UserError

LAYOUTS = ("tokens", "map")
FORMS = ("vector", "map", "tokens")


@runtime_checkable
class Backbone(Protocol):
    feature_layout: str  # "tokens" | "map" (LAYOUTS)
    num_features: int  # D: the width of forward's vectors and of forward_features' tokens or channels
    num_prefix_tokens: int  # leading non-patch tokens of forward_features (class, registers); 0 for a map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×num_features."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×(P+N)×D tokens, or a B×D×h×w map."""


@runtime_checkable
class ViTBackbone(Backbone, Protocol):
    """A backbone whose features are a token sequence (`feature_layout` "tokens")."""

    patch_embed: nn.Module
    blocks: nn.Sequential
    norm: nn.Module  # after the blocks: forward_features(x) = norm(blocks(embed(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×(P+N)×D: input pipeline, patch embedding, prefix tokens, position embedding."""

    def patch_grid(self, x: torch.Tensor) -> tuple[int, int]:
        """(gh, gw) of the patch tokens that images like `x` give: N = gh·gw."""


def embed_tokens(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm VisionTransformer's forward_features up to its blocks (timm 1.0: patch_embed, _pos_embed, patch_drop,
    norm_pre): B×C×H×W → B×(P+N)×D."""
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))


def require_tokens(backbone: Backbone, who: str) -> ViTBackbone:
    """The backbone, if it has a token sequence; else one UserError naming `who` needs one."""
    if backbone.feature_layout != "tokens":
        raise UserError(f"{who} needs a backbone with a token sequence (a ViT: vit_tiny or a dino_* backbone); "
                        f"{type(backbone).__name__} gives a feature {backbone.feature_layout}")
    return backbone


def forward_with_prompts(backbone: ViTBackbone, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """The ViT's features with prompt tokens inserted after its prefix tokens (VPT-shallow, Jia et al. 2022; L2P,
    Wang et al. 2022): prompts L×D (shared) or B×L×D → B×(P+L+N)×D, after the final norm. L = 0: forward_features."""
    seq = backbone.embed(x)
    prompts = prompts.expand(seq.shape[0], -1, -1) if prompts.dim() == 2 else prompts
    p = backbone.num_prefix_tokens
    return backbone.norm(backbone.blocks(torch.cat([seq[:, :p], prompts.to(seq.dtype), seq[:, p:]], dim=1)))


def tokens(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    """B×N×D: a ViT's patch tokens (prefix dropped), or a map's h·w positions, row-major."""
    feats = backbone.forward_features(x)
    if backbone.feature_layout == "map":
        return feats.flatten(2).transpose(1, 2)
    return feats[:, backbone.num_prefix_tokens:]


def feature_map(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    """B×D×h×w: a map as is, or a ViT's patch tokens (prefix dropped) laid out on its patch grid."""
    feats = backbone.forward_features(x)
    if backbone.feature_layout == "map":
        return feats
    gh, gw = backbone.patch_grid(x)
    return feats[:, backbone.num_prefix_tokens:].transpose(1, 2).reshape(x.shape[0], -1, gh, gw)


class BackboneView(nn.Module):
    """A backbone read as one form (FORMS); `out_channels` = its num_features (what the map trunk reads)."""

    def __init__(self, backbone: Backbone, form: str):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.body, self.form, self.out_channels = backbone, form, backbone.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "map":
            return feature_map(self.body, x)
        return tokens(self.body, x) if self.form == "tokens" else self.body(x)


@dataclass(frozen=True)
class BuiltBackbone:
    """What a `BACKBONES` builder returns: the module (meets `Backbone`), its feature width and the identity of its
    weights, recorded in config.json ({"weights": "random init", …} or the file's hash and source)."""

    module: nn.Module
    width: int
    identity: dict

    def __post_init__(self):
        layout, features = getattr(self.module, "feature_layout", None), getattr(self.module, "num_features", None)
        if layout not in LAYOUTS or features != self.width:
            raise TypeError(f"{type(self.module).__name__} does not meet the backbone contract: feature_layout "
                            f"{layout!r} (one of {LAYOUTS}), num_features {features!r} (the width, {self.width})")

    def view(self, form: str) -> nn.Module:
        """The module read as `form`; "vector" is the module itself, unwrapped (the feature cache keys on its
        state_dict names)."""
        return self.module if form == "vector" else BackboneView(self.module, form)
