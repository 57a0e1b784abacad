"""Pretrained DINO ViTs (Caron et al. 2021; DINOv2, Oquab et al. 2023) from timm: Hat Swap's shared extractor.

| registry name   | timm model                          | features | input (timm data config)        |
|-----------------|-------------------------------------|----------|---------------------------------|
| dino_vits16     | vit_small_patch16_224.dino          | 384      | 224 px, bicubic, ImageNet μ/σ   |
| dino_vitb16     | vit_base_patch16_224.dino           | 768      | 224 px, bicubic, ImageNet μ/σ   |
| dinov2_vits14   | vit_small_patch14_dinov2.lvd142m    | 384      | 518 px, bicubic, ImageNet μ/σ   |
| dinov2_vitb14   | vit_base_patch14_dinov2.lvd142m     | 768      | 518 px, bicubic, ImageNet μ/σ   |

Weights: see `pretrained_weights` (file flag > Hugging Face cache > hub; never random; every tensor matched). The
module maps a stream's B×C×h×w images (C = 1 or 3, values in [-1, 1]) to B×D class-token features: `BackboneInput`
first turns them into what the backbone was trained on, from the model's own timm data config (no hand-copied
constants).

Another input size (`--<name>.img-size S`, e.g. 32 for the Hat Swap notebooks' DINOv2 at CIFAR's 32 px): timm builds
the ViT for S×S inputs, so its patch grid is ⌊S/p⌋ × ⌊S/p⌋ (patch size p; at S = 32, p = 14: 2 × 2 patches read
pixels 0..27, the last 4 rows and columns reach no patch, as in Hugging Face's Dinov2 whose 14-stride patch
convolution drops them too), and when the checkpoint loads, timm's `checkpoint_filter_fn` resamples its position
embeddings once to that grid (`timm.layers.resample_abs_pos_embed`: the patch embeddings of the 37 × 37 grid of
518 px as an image, bicubic with antialiasing; the class token's embedding unchanged). Hugging Face's Dinov2 does
the same bicubic interpolation at every forward pass (`interpolate_pos_encoding`). The data config's input size
becomes S, so `BackboneInput` resizes to S (CIFAR at S = 32: no resize).
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.models import vision_transformer
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import BuiltBackbone, embed_tokens
from benchmark.models.pretrained_weights import classifier_keys, load_strictly, locate_weights
from benchmark.registry import BACKBONES

# The streams' pixel convention (binary_tasks: ToTensor, then Normalize(0.5, 0.5)): x = (p - 0.5) / 0.5, p in [0, 1].
STREAM_PIXEL_MEAN, STREAM_PIXEL_STD = 0.5, 0.5


@dataclass(frozen=True)
class DinoConfig:
    """0 keeps the architecture's own value. img_size: the input resolution (position embeddings resampled on load:
    see the module docstring). embed_dim, depth, num_heads exist for small checkpoints (tests, distilled models): the
    weights file must match them, or loading fails with one UserError."""

    img_size: int = 0  # input resolution; 0 = the timm data config's (224, or 518 for DINOv2)
    embed_dim: int = 0
    depth: int = 0
    num_heads: int = 0

    def __post_init__(self):
        if min(self.img_size, self.embed_dim, self.depth, self.num_heads) < 0:
            raise UserError("DINO size overrides (img-size, embed-dim, depth, num-heads) must be ≥ 0")
        if self.embed_dim and self.num_heads and self.embed_dim % self.num_heads:
            raise UserError(f"embed-dim {self.embed_dim} must be divisible by num-heads {self.num_heads}")


class BackboneInput(nn.Module):
    """B×C×h×w in [-1, 1] → B×3×S×S in the backbone's input space, from its timm data config:

        p = x·σ_s + μ_s   (undo the stream's normalisation; p in [0, 1])
        p → 3 channels    (grey images repeated, as torchvision's Grayscale(3) does)
        p → S×S           (the config's interpolation, antialiased; the whole image, no crop: at 28/32 px the
                           object fills the frame, and a centre crop would cut it)
        (p − mean) / std  (the config's per-channel mean and std)
    """

    def __init__(self, data_config: dict):
        super().__init__()
        _, h, w = data_config["input_size"]
        self.size, self.interpolation = (h, w), data_config["interpolation"]
        self.register_buffer("mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data_config["std"]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x * STREAM_PIXEL_STD + STREAM_PIXEL_MEAN
        if p.shape[1] == 1:
            p = p.expand(-1, 3, -1, -1)
        if tuple(p.shape[-2:]) != self.size:
            mode = self.interpolation if self.interpolation in ("bilinear", "bicubic") else "bilinear"
            p = F.interpolate(p, size=self.size, mode=mode, antialias=True, align_corners=False)
        return (p - self.mean) / self.std

    def describe(self) -> dict:
        """What the feature cache keys on: a different resize or normalisation gives different features."""
        return {"size": list(self.size), "interpolation": self.interpolation,
                "mean": [round(v, 6) for v in self.mean.flatten().tolist()],
                "std": [round(v, 6) for v in self.std.flatten().tolist()],
                "stream_norm": [STREAM_PIXEL_MEAN, STREAM_PIXEL_STD]}


class PretrainedViT(nn.Module):
    """`input` (BackboneInput) then `vit` (timm VisionTransformer, num_classes=0 → B×D pooled class token), as a
    token backbone (benchmark/models/backbone.py): every token access goes through `input` first."""

    feature_layout = "tokens"

    def __init__(self, vit: nn.Module, data_config: dict):
        super().__init__()
        self.input, self.vit = BackboneInput(data_config), vit

    @property
    def num_features(self) -> int:
        return self.vit.num_features

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    @property
    def patch_embed(self) -> nn.Module:
        return self.vit.patch_embed

    @property
    def blocks(self) -> nn.Sequential:
        return self.vit.blocks

    @property
    def norm(self) -> nn.Module:
        return self.vit.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(self.input(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(self.input(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return embed_tokens(self.vit, self.input(x))

    def patch_grid(self, x: torch.Tensor) -> tuple[int, int]:
        return self.vit.patch_embed.dynamic_feat_size(self.input.size)  # every input is resized to input.size


def build_pretrained_vit(name: str, timm_name: str, cfg: DinoConfig, weights: str = "") -> BuiltBackbone:
    """→ (PretrainedViT: B×C×h×w → B×D, D, identity). Weights go through one strict loader whatever their source, with
    timm's own checkpoint conversion (`checkpoint_filter_fn`: Meta's DINOv2 key names, position embeddings resampled
    to the patch grid of `img_size`)."""
    hub_id = f"timm/{timm_name}"
    src = locate_weights(name, hub_id, weights)
    sizes = {k: getattr(cfg, k) for k in ("img_size", "embed_dim", "depth", "num_heads") if getattr(cfg, k)}
    overlay = {}
    if cfg.img_size:  # so that the data config (and hence BackboneInput) resizes to the size the model takes
        overlay["input_size"] = (3, cfg.img_size, cfg.img_size)
    vit = timm.create_model(timm_name, pretrained=False, pretrained_cfg_overlay=overlay, num_classes=0, **sizes)
    hint = f" with {sizes}" if sizes else ""
    loaded = load_strictly(vit, src.path, f"{timm_name} weights{hint}", "pass a checkpoint of that architecture (or "
                           "pick the matching --backbone)", filter_fn=vision_transformer.checkpoint_filter_fn,
                           resampled=("pos_embed",), unused=classifier_keys(vit))
    data_config = timm.data.resolve_model_data_config(vit)
    module = PretrainedViT(vit, data_config)
    return BuiltBackbone(module, vit.num_features, src.identity | loaded | {
        "timm_arch": timm_name, "input": module.input.describe(), "patch_grid": list(vit.patch_embed.grid_size)})


def _register(name: str, timm_name: str):
    @BACKBONES.register(name, config_cls=DinoConfig, hub_id=f"timm/{timm_name}", timm_name=timm_name)
    def build(cfg: DinoConfig, *, image_size: int, in_chans: int, weights: str = ""):
        if in_chans not in (1, 3):
            raise UserError(f"{name} takes 1- or 3-channel images, the stream yields {in_chans}")
        return build_pretrained_vit(name, timm_name, cfg, weights)

    build.__doc__ = f"{name}: timm {timm_name}, pretrained (see module docstring)."
    return build


dino_vits16 = _register("dino_vits16", "vit_small_patch16_224.dino")
dino_vitb16 = _register("dino_vitb16", "vit_base_patch16_224.dino")
dinov2_vits14 = _register("dinov2_vits14", "vit_small_patch14_dinov2.lvd142m")
dinov2_vitb14 = _register("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m")  # the Hat Swap notebooks' backbone
