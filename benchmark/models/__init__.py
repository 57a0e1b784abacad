"""Backbones (registry `BACKBONES`) and the Hat Swap network built on them."""

from benchmark.models import dino, feature_maps, small_cnn, vit_tiny  # noqa: F401  (registration)
from benchmark.models.hatswap_net import HatSwapNet, build_model  # noqa: F401
