"""The backbone contract (benchmark/models/backbone.py), checked over every registered backbone at test size, on the
CPU, without downloads: its width is its vector's, its map has the declared channels, its tokens have num_features
width with the prefix tokens dropped, a ViT's token sequence takes prompts, and a backbone without one is refused in
one line. A new backbone needs only its test-sized case in `CASES`."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import (
    Backbone,
    BackboneView,
    BuiltBackbone,
    ViTBackbone,
    feature_map,
    forward_with_prompts,
    require_tokens,
    tokens,
)
from benchmark.models.layers import TokenBackbone
from benchmark.models.vit_tiny import TIMM_ARCH, VitTinyConfig, create_vit_tiny
from benchmark.registry import BACKBONES

TINY_DINO = {"img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2}
# name → (config kwargs, image size, channels); a dino_* entry takes a test-sized weights file (it is never random)
CASES = {"vit_tiny": ({"embed_dim": 16, "depth": 2, "num_heads": 2}, 28, 1), "small_cnn": ({}, 28, 1),
         "efficientnet_b0_fpn": ({"pretrained": False}, 32, 3),
         **{n: (TINY_DINO, 32, 3) for n in ("dino_vits16", "dino_vitb16", "dinov2_vits14", "dinov2_vitb14")}}
# Registry names that share one file: a family of one builder (the four DINO checkpoints), by file stem
FAMILIES = {"dino": {"dino_vits16", "dino_vitb16", "dinov2_vits14", "dinov2_vitb14"}}


def tiny_weights(name: str, folder: Path) -> str:
    """A weights file of the test-sized architecture, for a backbone that takes only pretrained weights."""
    timm_name = BACKBONES.get(name).meta.timm_name
    if timm_name is None:
        return ""
    torch.manual_seed(0)
    sizes = {k: v for k, v in TINY_DINO.items() if v}
    path = folder / f"{name}.pth"
    torch.save(timm.create_model(timm_name, pretrained=False, num_classes=0, **sizes).state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[BuiltBackbone, torch.Tensor, str]]:
    """name → (the built backbone, a batch of 2 images of its case's size, its weights file or '')."""
    folder, out = tmp_path_factory.mktemp("weights"), {}
    for name in BACKBONES.names():
        assert name in CASES, f"backbone {name!r} needs a test-sized case in CASES"
        args, size, chans = CASES[name]
        entry, weights = BACKBONES.get(name), tiny_weights(name, folder)
        torch.manual_seed(0)
        b = entry.build(entry.config_cls(**args), image_size=size, in_chans=chans, weights=weights)
        out[name] = (b, torch.rand(2, chans, size, size) * 2 - 1, weights)
    return out


NAMES = BACKBONES.names()


@pytest.mark.parametrize("name", NAMES)
def test_width_is_the_vector_output_and_the_map_has_the_declared_channels(name, built):
    b, x, _ = built[name]
    assert isinstance(b, BuiltBackbone) and isinstance(b.module, Backbone) and b.width == b.module.num_features
    b.module.eval()
    with torch.no_grad():
        vec, fmap, toks = b.view("vector")(x), b.view("map")(x), b.view("tokens")(x)
    assert b.view("vector") is b.module  # unwrapped: the feature cache keys on the module's own state_dict names
    assert vec.shape == (2, b.width) and torch.isfinite(vec).all()
    assert fmap.dim() == 4 and fmap.shape[:2] == (2, b.width) and b.view("map").out_channels == b.width
    # the token view is the map's positions, row-major, whatever the layout: one adapter, two views
    assert toks.shape == (2, fmap.shape[2] * fmap.shape[3], b.width)
    assert torch.equal(toks, fmap.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("name", NAMES)
def test_tokens_drop_the_prefix_and_a_token_backbone_takes_prompts(name, built):
    b, x, _ = built[name]
    m = b.module.eval()
    if m.feature_layout != "tokens":
        assert m.num_prefix_tokens == 0
        with pytest.raises(UserError, match=f"l2p needs a backbone with a token sequence.*{type(m).__name__}"):
            require_tokens(m, "--strategy l2p")
        return
    vit = require_tokens(m, "--strategy l2p")
    assert isinstance(vit, ViTBackbone) and vit.num_prefix_tokens >= 1
    with torch.no_grad():
        feats, toks = vit.forward_features(x), tokens(vit, x)
        gh, gw = vit.patch_grid(x)
        assert feats.shape == (2, vit.num_prefix_tokens + gh * gw, b.width) and toks.shape == (2, gh * gw, b.width)
        assert torch.equal(toks, feats[:, vit.num_prefix_tokens:])
        assert torch.equal(feature_map(vit, x)[:, :, 1, 0], toks[:, gw])  # token k is map pixel (k // gw, k % gw)
        assert torch.allclose(vit.norm(vit.blocks(vit.embed(x))), feats, atol=1e-6)  # the prompt hook's identity
        assert torch.allclose(forward_with_prompts(vit, x, torch.zeros(0, b.width)), feats, atol=1e-6)
        prompted = forward_with_prompts(vit, x, torch.randn(3, b.width))
    assert prompted.shape == (2, vit.num_prefix_tokens + 3 + gh * gw, b.width)
    assert not torch.equal(prompted[:, vit.num_prefix_tokens + 3:], toks)  # the patches attend to them


@pytest.mark.parametrize("name", NAMES)
def test_the_identity_names_the_weights(name, built):
    b, _, weights = built[name]
    if weights:  # a pretrained-only backbone: the file it loaded, never "random init"
        assert b.identity["weights_sha256"] == hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    else:
        assert b.identity["weights"] == "random init"


@pytest.mark.parametrize("name", NAMES)
def test_a_view_reads_its_own_copys_weights_and_feeds_the_multi_task_trunk(name, built):
    """Strategies copy models (LwF's teacher, progressive columns): a view reads its own copy's weights."""
    b, x, _ = built[name]
    view = BackboneView(b.module, "tokens").eval().requires_grad_(False)
    twin = copy.deepcopy(view)
    with torch.no_grad():
        before = view(x)
        for p in twin.parameters():
            p.add_(0.5)
        assert torch.equal(view(x), before) and not torch.equal(twin(x), before)
    mtl = TokenBackbone(b.module, b.width, n_tokens=before.shape[1], pooling="flatten")
    assert mtl.pooled(mtl(x)).shape == (2, b.width * before.shape[1])


@pytest.mark.parametrize("name", NAMES)
def test_each_backbone_lives_in_its_own_file(name):
    stem = BACKBONES.get(name).build.__module__.rsplit(".", 1)[-1]
    assert stem == name or name in FAMILIES.get(stem, ()), f"backbone {name!r} is registered in {stem}.py"


def test_a_module_that_does_not_declare_the_contract_is_refused_when_built():
    with pytest.raises(TypeError, match="Linear does not meet the backbone contract: feature_layout None"):
        BuiltBackbone(nn.Linear(3, 4), 4, {"weights": "random init"})
    cnn = BACKBONES.get("small_cnn").build(BACKBONES.get("small_cnn").config_cls(), image_size=28, in_chans=1).module
    with pytest.raises(TypeError, match="num_features 32 .the width, 16."):
        BuiltBackbone(cnn, 16, {"weights": "random init"})


def test_vit_tiny_is_timms_model_weight_for_weight():
    """The contract's ViT subclass changes no number: same initial weights, same state_dict names, same output."""
    cfg = VitTinyConfig(embed_dim=16, depth=2, num_heads=2)
    torch.manual_seed(3)
    ours = create_vit_tiny(cfg, 28, 1)
    torch.manual_seed(3)
    theirs = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=0, img_size=28, in_chans=1, patch_size=4,
                               embed_dim=16, depth=2, num_heads=2, mlp_ratio=cfg.mlp_ratio)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(ours.eval()(x), theirs.eval()(x)) and ours.pretrained_cfg == theirs.pretrained_cfg


@pytest.mark.parametrize("name", ["vit_tiny", "small_cnn"])
def test_a_frozen_backbone_without_weights_is_recorded_as_random_init_and_trains_nothing(name, tiny):
    from benchmark.config import parse_config
    from benchmark.models import build_model
    from benchmark.tasks import TaskSpec

    cfg, _ = parse_config(tiny("--backbone", name, "--backbone-mode", "frozen", "--seed", "4"))
    model, identity = build_model(cfg, [TaskSpec("a"), TaskSpec("b")], image_size=28, in_chans=1)
    assert identity["weights"] == "random init (torch seed 4)" and identity["mode"] == "frozen"
    assert not any(p.requires_grad for p in model.backbone.parameters()) and identity["trainable_params"] > 0
