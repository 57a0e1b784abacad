"""A timm ViT sized for 28/32 px inputs: the offline stand-in for DINO ViT-S/16.

Random init by default; `--backbone-weights FILE` loads a timm-format state dict of the same architecture, strictly
(`pretrained_weights.load_strictly`: every tensor matched, same shapes, nothing resampled), e.g. the DINO weights
`hatswap pretrain` writes (benchmark/pretrain/). When the file's manifest (`<stem>.manifest.json`, written beside it
by `hatswap pretrain`) is present, the file's sha256 must equal the manifest's and the manifest's architecture and
input must equal the run's; its recipe joins the run's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models import build_model_with_cfg
from timm.models.vision_transformer import VisionTransformer

from benchmark.errors import UserError
from benchmark.models.backbone import BuiltBackbone, embed_tokens
from benchmark.models.pretrained_weights import classifier_keys, from_file, load_strictly, read_weights_manifest
from benchmark.registry import BACKBONES

TIMM_ARCH = "vit_tiny_patch16_224"  # resized by the config below


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


def architecture(cfg: VitTinyConfig, image_size: int, in_chans: int) -> dict:
    """What a weights file must match (stored in a pretraining manifest, compared on load)."""
    return {"timm_arch": TIMM_ARCH, "image_size": image_size, "in_chans": in_chans,
            **{f"vit_tiny.{k}": v for k, v in vars(cfg).items()}}


class VitTinyModel(VisionTransformer):
    """timm's VisionTransformer (the same modules, weights and state_dict names as `timm.create_model(TIMM_ARCH)`)
    declaring the token backbone contract (benchmark/models/backbone.py)."""

    feature_layout = "tokens"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return embed_tokens(self, x)

    def patch_grid(self, x: torch.Tensor) -> tuple[int, int]:
        return self.patch_embed.dynamic_feat_size(tuple(x.shape[-2:]))


def create_vit_tiny(cfg: VitTinyConfig, image_size: int, in_chans: int, weights_file: str | Path = "",
                    dynamic_img_size: bool = False) -> VitTinyModel:
    """The ViT (num_classes=0: B×C×H×W → B×embed_dim, the class token after the final norm), built as timm builds
    TIMM_ARCH. dynamic_img_size: also takes other input sizes, the position embedding interpolated (DINO's local
    crops)."""
    if image_size % cfg.patch_size:
        raise UserError(f"image size {image_size} is not divisible by --vit_tiny.patch-size {cfg.patch_size}")
    model = build_model_with_cfg(VitTinyModel, TIMM_ARCH, pretrained=False, num_classes=0, img_size=image_size,
                                 in_chans=in_chans, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
                                 depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
                                 dynamic_img_size=dynamic_img_size)
    if weights_file:
        load_weights(model, cfg, image_size, in_chans, Path(weights_file))
    return model


def load_weights(model, cfg: VitTinyConfig, image_size: int, in_chans: int, path: Path) -> dict:
    """The file into `model`, strictly: no tensor resampled or adapted (a file of another size is an error, whereas
    timm's pretrained path would resample its patch and position embeddings). → what the run records beyond the
    file's identity (see `load_strictly`)."""
    sizes = ", ".join(f"{k} {v}" for k, v in architecture(cfg, image_size, in_chans).items() if k != "timm_arch")
    return load_strictly(model, path, f"vit_tiny weights of this size ({sizes})",
                         "pass the --vit_tiny.* sizes and image size it was trained with (or pick the matching "
                         "--backbone)", unused=classifier_keys(model))


def _check_manifest(manifest: dict, path: Path, expected: dict) -> None:
    stored = manifest.get("architecture")
    if not isinstance(stored, dict):
        raise UserError(f"weights manifest of {path} has no architecture object, so the run cannot check the file "
                        f"against its sizes; delete the manifest (the weights then load without their pretraining "
                        f"record) or pretrain again")
    if diff := {k: (stored.get(k), v) for k, v in expected.items() if stored.get(k) != v}:
        shown = ", ".join(f"{k}: file {a!r}, run {b!r}" for k, (a, b) in sorted(diff.items()))
        raise UserError(f"--backbone-weights {path} was pretrained for another architecture or input ({shown}); "
                        f"pass the matching --vit_tiny.* sizes / image size, or pretrain for this one")


@BACKBONES.register("vit_tiny", config_cls=VitTinyConfig, weights_file=True)
def vit_tiny(cfg: VitTinyConfig, *, image_size: int, in_chans: int, weights: str = "") -> BuiltBackbone:
    """→ the ViT (B×C×H×W → B×embed_dim, the class token after the final norm; tokens B×(1+N)×embed_dim), its
    width, its weights identity."""
    identity = {"timm_arch": f"{TIMM_ARCH} (resized)"}
    if not weights:
        return BuiltBackbone(create_vit_tiny(cfg, image_size, in_chans), cfg.embed_dim,
                             identity | {"weights": "random init"})
    src = from_file(weights)
    manifest = read_weights_manifest(src.path, src.identity["weights_sha256"])
    if manifest is not None:
        _check_manifest(manifest, src.path, architecture(cfg, image_size, in_chans))
        identity["pretraining"] = {k: manifest[k] for k in ("method", "key", "source", "epochs", "seed",
                                                            "data_sha256", "manifest") if k in manifest}
    model = create_vit_tiny(cfg, image_size, in_chans)
    loaded = load_weights(model, cfg, image_size, in_chans, src.path)
    return BuiltBackbone(model, model.num_features, identity | src.identity | loaded)
