"""Prefix-tuning of a ViT backbone (Li & Liang 2021, as DualPrompt and CODA-Prompt use it on a ViT): at chosen blocks,
learnt key and value vectors are prepended to the attention's own, so every token also attends to them; the sequence
keeps its length (unlike prompt-tuning, `backbone.forward_with_prompts`, which inserts tokens).

    block i with prefix (p_k, p_v), each B×L×D:
        K = [p_k ; W_k·norm1(x)],  V = [p_v ; W_v·norm1(x)],  Q = W_q·norm1(x)
        x ← x + attn_proj(softmax(Q Kᵀ/√d_h) V);  x ← x + mlp(norm2(x))        (timm's Block, its layer scale and
                                                                                 drop path included)

The prefix is split into heads as the keys are (D = heads × d_h), and the attention's q/k norms (identity in a plain
ViT) apply after the concatenation. DualPrompt (Wang et al. 2022, their `PreT_Attention`) and CODA-Prompt (Smith et
al. 2023, `vit.py`'s `Attention.forward(x, prompt)`) prepend exactly this way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.backbone import ViTBackbone


def prefix_attention(attn: nn.Module, x: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
    """timm's `Attention.forward` with key/value prefixes: prefix B×2×L×D (or 2×L×D, shared by the batch); None or
    L = 0 is the attention itself."""
    if prefix is None or prefix.shape[-2] == 0:
        return attn(x)
    b, n, _ = x.shape
    heads, dim_h = attn.num_heads, attn.head_dim
    prefix = prefix.expand(b, -1, -1, -1) if prefix.dim() == 3 else prefix
    q, k, v = attn.qkv(x).reshape(b, n, 3, heads, dim_h).permute(2, 0, 3, 1, 4).unbind(0)
    pk, pv = (prefix[:, i].to(x.dtype).reshape(b, -1, heads, dim_h).transpose(1, 2) for i in (0, 1))
    q, k, v = attn.q_norm(q), attn.k_norm(torch.cat([pk, k], dim=2)), torch.cat([pv, v], dim=2)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    out = attn.norm(out.transpose(1, 2).reshape(b, n, heads * dim_h))
    return attn.proj_drop(attn.proj(out))


def block_with_prefix(block: nn.Module, x: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
    """timm's `Block.forward` with `prefix_attention` in place of its attention."""
    x = x + block.drop_path1(block.ls1(prefix_attention(block.attn, block.norm1(x), prefix)))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def forward_with_prefixes(backbone: ViTBackbone, x: torch.Tensor, prefixes: dict[int, torch.Tensor]) -> torch.Tensor:
    """The ViT's tokens B×(P+N)×D after the final norm, block i run with `prefixes[i]` (B×2×L×D or 2×L×D) where given.
    {} is `forward_features`."""
    bad = sorted(set(prefixes) - set(range(len(backbone.blocks))))
    if bad:
        raise ValueError(f"prefix layers {bad} are outside the backbone's {len(backbone.blocks)} blocks")
    seq = backbone.embed(x)
    for i, block in enumerate(backbone.blocks):
        seq = block_with_prefix(block, seq, prefixes.get(i))
    return backbone.norm(seq)
