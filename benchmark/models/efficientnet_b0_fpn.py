"""`efficientnet_b0_fpn` (the dense suite's backbone): timm `efficientnet_b0` with `features_only` (strides 8, 16,
32) into torchvision's `FeaturePyramidNetwork` (128 channels, plus its extra max-pooled level). Its feature map
(`forward_features`) is the stride-8 level, which the FPN's top-down path has already merged with the coarser ones:
B×128×H/8×W/8, what the dense heads read. As a classification backbone (the binary stream) it returns that level
globally average-pooled: B×128.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import timm
import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from benchmark.errors import UserError
from benchmark.models.backbone import BuiltBackbone
from benchmark.models.dino import BackboneInput
from benchmark.models.pretrained_weights import load_strictly, locate_weights
from benchmark.registry import BACKBONES

FPN_CHANNELS = 128
EFFNET_HUB_ID = "timm/efficientnet_b0.ra_in1k"


class EfficientNetFPN(nn.Module):
    """EfficientNet-B0 (strides 8/16/32) + FPN (128 ch). `forward_features(x)` → B×128×H/8×W/8; `forward` → B×128."""

    feature_layout, num_prefix_tokens, num_features = "map", 0, FPN_CHANNELS  # the backbone contract

    def __init__(self, body: nn.Module, data_config: dict):
        super().__init__()
        self.input = BackboneInput(data_config)
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), FPN_CHANNELS, extra_blocks=LastLevelMaxPool())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(self.input(x)))))
        return levels["0"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


def _cut_off_keys(body: nn.Module) -> list[str]:
    """The whole efficientnet_b0's tensors that its `features_only` body lacks (the 1×1 head conv, its norm, the
    classifier): an ImageNet checkpoint holds them, the body uses none. Built on the meta device: names only."""
    with torch.device("meta"):
        whole = timm.create_model("efficientnet_b0", pretrained=False)
    return [k for k in whole.state_dict() if k not in body.state_dict()]


@dataclass(frozen=True)
class EfficientNetFPNConfig:
    pretrained: bool = True  # ImageNet weights (dense suite): --backbone-weights file > Hugging Face cache > hub


@BACKBONES.register("efficientnet_b0_fpn", config_cls=EfficientNetFPNConfig, hub_id=EFFNET_HUB_ID)
def efficientnet_b0_fpn(cfg: EfficientNetFPNConfig, *, image_size: int, in_chans: int,
                        weights: str = "") -> BuiltBackbone:
    """→ (EfficientNetFPN, 128, weights identity). Input: the stream's images in [-1, 1], 1 or 3 channels, kept at
    their size (dense heads need the input resolution), normalised with the model's own timm data config."""
    if in_chans not in (1, 3):
        raise UserError(f"efficientnet_b0_fpn takes 1- or 3-channel images, the stream yields {in_chans}")
    if weights and not cfg.pretrained:
        raise UserError("--backbone-weights with --efficientnet_b0_fpn.no-pretrained: drop one of the two")
    src = locate_weights("efficientnet_b0_fpn", EFFNET_HUB_ID, weights) if cfg.pretrained else None
    body = timm.create_model("efficientnet_b0", pretrained=False, features_only=True, out_indices=(2, 3, 4))
    identity = {"weights": "random init"}
    if src is not None:
        loaded = load_strictly(body, src.path, "efficientnet_b0 weights", "pass an efficientnet_b0 checkpoint "
                               "(timm's layout, as timm/efficientnet_b0.ra_in1k)", unused=_cut_off_keys(body))
        identity = src.identity | loaded
    data_config = timm.data.resolve_data_config({}, model=body) | {"input_size": (3, image_size, image_size)}
    module = EfficientNetFPN(body, data_config)
    return BuiltBackbone(module, FPN_CHANNELS, identity | {"timm_arch": "efficientnet_b0 (features_only 8/16/32) + "
                                                                        "FPN 128", "input": module.input.describe()})
