"""Prefix-tuning (benchmark/models/prompting.py): a prefix is exactly extra keys and values in a block's attention.
Checked against the plain timm block run on a longer sequence: the original tokens' outputs equal those of a block
whose prefix holds the extra tokens' own keys and values."""

from __future__ import annotations

import pytest
import torch

from benchmark.models.prompting import block_with_prefix, forward_with_prefixes, prefix_attention
from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    vit = create_vit_tiny(VitTinyConfig(embed_dim=16, depth=2, num_heads=2), image_size=28, in_chans=1).eval()
    with torch.no_grad():  # weights large enough that attention is far from uniform (timm's init is std 0.02)
        for p in vit.parameters():
            p.normal_(0, 0.3)
    return vit


def keys_values(attn, tokens: torch.Tensor) -> torch.Tensor:
    """B×2×L×D: the attention's own key and value projections of `tokens` (already normed)."""
    b, n, d = tokens.shape
    _, k, v = attn.qkv(tokens).reshape(b, n, 3, d).unbind(2)
    return torch.stack([k, v], dim=1)


def test_a_prefix_is_the_extra_tokens_keys_and_values(vit):
    block, x = vit.blocks[0], vit.embed(torch.randn(2, 1, 28, 28))
    extra = torch.randn(2, 3, x.shape[-1])
    plain = block(torch.cat([x, extra], dim=1))[:, : x.shape[1]]  # x's tokens also attend to the 3 extra ones
    prefixed = block_with_prefix(block, x, keys_values(block.attn, block.norm1(extra)))
    assert prefixed.shape == x.shape
    assert torch.allclose(prefixed, plain, atol=1e-5)
    assert (block(x) - plain).abs().max() > 1e-2  # the prefix changes the output


def test_no_prefix_is_the_backbone_and_a_shared_prefix_is_broadcast(vit):
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(forward_with_prefixes(vit, x, {}), vit.forward_features(x), atol=1e-6)
    assert torch.allclose(prefix_attention(vit.blocks[1].attn, vit.embed(x), torch.zeros(2, 0, 16)),
                          vit.blocks[1].attn(vit.embed(x)))
    shared = torch.randn(2, 4, 16)
    assert torch.allclose(forward_with_prefixes(vit, x, {1: shared}),
                          forward_with_prefixes(vit, x, {1: shared.expand(2, -1, -1, -1)}), atol=1e-6)


def test_gradients_reach_the_prefix_and_a_layer_outside_the_backbone_is_refused(vit):
    x, prefix = torch.randn(2, 1, 28, 28), torch.zeros(2, 2, 16, requires_grad=True)
    forward_with_prefixes(vit, x, {0: prefix})[:, 0, 0].sum().backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="outside the backbone's 2 blocks"):
        forward_with_prefixes(vit, x, {2: prefix})
