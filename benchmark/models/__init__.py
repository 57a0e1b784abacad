"""Backbones (registry `BACKBONES`, one file each; their contract: backbone.py) and the Hat Swap network on them."""

from benchmark.models import dino, efficientnet_b0_fpn, small_cnn, vit_tiny  # noqa: F401  (registration)
from benchmark.models.hatswap_net import HatSwapNet, build_model  # noqa: F401
