"""A timm ViT sized for 28/32 px inputs, trained from scratch: the offline stand-in for DINO ViT-S/16."""

from __future__ import annotations

from dataclasses import dataclass

import timm

from benchmark.errors import UserError
from benchmark.registry import BACKBONES


@dataclass(frozen=True)
class VitTinyConfig:
    patch_size: int = 4  # 28 px → 7×7 patches
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0

    def __post_init__(self):
        for name in ("patch_size", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise UserError(f"--vit_tiny.{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if not 0 < self.mlp_ratio < float("inf"):
            raise UserError(f"--vit_tiny.mlp-ratio must be > 0, got {self.mlp_ratio}")
        if self.embed_dim % self.num_heads:
            raise UserError(f"--vit_tiny.embed-dim ({self.embed_dim}) must be divisible by --vit_tiny.num-heads "
                            f"({self.num_heads})")


@BACKBONES.register("vit_tiny", config_cls=VitTinyConfig)
def vit_tiny(cfg: VitTinyConfig, *, image_size: int, in_chans: int, weights: str = ""):
    """→ (module mapping B×C×H×W to B×embed_dim (class token after the final norm), feature dim, weights identity)."""
    if weights:
        raise UserError("--backbone-weights applies to pretrained backbones; vit_tiny is trained from scratch "
                        "(drop the flag or pick a dino_* backbone)")
    if image_size % cfg.patch_size:
        raise UserError(f"image size {image_size} is not divisible by --vit_tiny.patch-size {cfg.patch_size}")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=image_size,
                              in_chans=in_chans, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                              num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio)
    return model, model.num_features, {"weights": "random init", "timm_arch": "vit_tiny_patch16_224 (resized)"}
