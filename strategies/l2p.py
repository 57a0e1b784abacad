"""Learning to Prompt (L2P; Wang et al., CVPR 2022): a pool of prompts chosen per image by key–query matching,
prepended to the tokens of a frozen pretrained ViT; only the prompts, their keys and the classifier train.

    pool     M prompts P_m ∈ R^{L_p×D}, each with a key k_m ∈ R^D
    query    q(x) = the frozen ViT's class token without prompts (strategies/common/prompting.py), no gradient
    select   K_x = the N keys of highest cos(q(x), k_m)                                    (B×N indices)
    forward  the ViT on [cls; P_{K_x,1}; …; P_{K_x,N}; patches]  (prompt-tuning: benchmark/models/backbone.py
             `forward_with_prompts`), features = the mean of the N·L_p prompt tokens' outputs (their
             `head_type='prompt'`), read by the shared layers and heads
    loss     CE + λ · (1/B) Σ_b Σ_{m∈K_x_b} (1 − cos(q(x_b), k_m))      (their `pull_constraint`: −λ·Σcos/B, the same
             gradient; this form is ≥ 0 and 0 when every selected key points along its query)

Source and defaults: the authors' PyTorch port, JH-LEE-KR/l2p-pytorch (prompt.py, vision_transformer.py,
configs/cifar100_l2p.py): M = 10, L_p = 5, N = 5, λ = 0.1 (`pull_constraint_coeff`), prompts and keys initialised
uniform on [0, 1) (`initializer` and `prompt_key_init` 'uniform'), query `embedding_key='cls'`, class-IL
`train_mask` (the logits of classes outside the current experience are −inf in training). Kept at ViT-B's values on
the 64-wide, 4-block vit_tiny: 25 prompt tokens beside its 49 patches.

Choices, stated:
- Batch-wise selection (`batchwise_prompt`, their default): in training, the N prompts most often selected in the
  batch serve every image of it (ties to the lower index) and the surrogate pulls those keys. At evaluation each
  image keeps its own N (their code applies the batch vote at test too, which makes a test image's prediction
  depend on the others in its batch). `--l2p.no-batchwise`: per-image selection in training too.
- The prompts enter after the position embedding, without one of their own (VPT; their port instead extends the
  position embedding over the prompt slots, which a frozen pretrained backbone has no trained values for).
- The optimizer and lr are the run's (Adam, `--lr`), not theirs (Adam, lr 0.03 scaled by batch/256 in main.py, gradient
  clipping 1.0); a fresh optimizer state at every task, as theirs (`reinit_optimizer`).
- Task-IL: the same selection by the query; each task's head reads the features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import ViTBackbone, forward_with_prompts
from benchmark.registry import STRATEGIES
from benchmark.tuning.space import LogUniform, searchable
from strategies.common.prompting import Prompter, prompt_backbone, prompt_generator, prompt_template


@dataclass(frozen=True)
class L2PConfig:
    pool_size: int = 10  # M prompts in the pool (l2p-pytorch `size`)
    prompt_length: int = 5  # L_p tokens per prompt (`length`)
    top_k: int = 5  # N prompts per image (`top_k`)
    pull_coeff: float = field(default=0.1, metadata=searchable(LogUniform(  # λ of the surrogate key loss
        0.01, 1.0, source="l2p-pytorch's pull_constraint_coeff 0.1; DualPrompt's repo uses 1.0")))
    batchwise: bool = True  # training: the batch's most selected prompts for every image (`batchwise_prompt`)
    train_mask: bool = True  # class-IL training: only the current experience's classes compete (`train_mask`)

    def __post_init__(self):
        if min(self.pool_size, self.prompt_length, self.top_k) < 1 or self.top_k > self.pool_size:
            raise UserError(f"--l2p.pool-size, --l2p.prompt-length and --l2p.top-k must be ≥ 1 with top-k ≤ pool-size "
                            f"(got {self.pool_size}, {self.prompt_length}, {self.top_k})")
        if self.pull_coeff < 0:
            raise UserError(f"--l2p.pull-coeff must be ≥ 0 (got {self.pull_coeff})")


def key_similarity(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """B×M: cos(q_b, k_m) (l2-normalised, as their `l2_normalize`)."""
    return F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T


def batch_vote(idx: torch.Tensor, n: int) -> torch.Tensor:
    """B×N → B×N: the n indices most frequent in `idx`, ties to the lower index, for every row."""
    ids, counts = idx.unique(sorted=True, return_counts=True)
    order = torch.sort(counts, descending=True, stable=True).indices[:n]
    return ids[order].expand(idx.shape[0], -1)


def pull_loss(similarity: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_b Σ_k (1 − cos(q_b, k_{idx_bk})): B×M similarities, B×N selected indices."""
    return (1 - similarity.gather(1, idx)).sum() / idx.shape[0]


class PromptPool(Prompter):
    """L2P's pool (module docstring): prompts M×L_p×D and keys M×D, drawn from `generator`."""

    def __init__(self, cfg: L2PConfig, vit: ViTBackbone, generator: torch.Generator):
        super().__init__()
        self.cfg, dim = cfg, vit.num_features
        self.prompts = nn.Parameter(torch.rand(cfg.pool_size, cfg.prompt_length, dim, generator=generator))
        self.keys = nn.Parameter(torch.rand(cfg.pool_size, dim, generator=generator))
        self.last_idx: torch.Tensor | None = None  # the latest selection, B×N

    def select(self, query: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (B×N prompt indices, B×M similarities)."""
        similarity = key_similarity(query, self.keys.to(query.dtype))
        idx = similarity.topk(self.cfg.top_k, dim=1).indices
        if training and self.cfg.batchwise:
            idx = batch_vote(idx, self.cfg.top_k)
        return idx, similarity

    def prompted(self, backbone, x, query, task):
        idx, similarity = self.select(query, training=task is not None)
        self.last_idx = idx
        chosen = self.prompts[idx].flatten(1, 2)  # B×(N·L_p)×D, in the order of the selection
        tokens = forward_with_prompts(backbone, x, chosen)
        p = backbone.num_prefix_tokens
        feats = tokens[:, p:p + chosen.shape[1]].mean(dim=1)
        return feats, self.cfg.pull_coeff * pull_loss(similarity, idx)


@STRATEGIES.register("l2p", config_cls=L2PConfig, prompts_backbone=True, ptm=True)
def build_l2p(cfg: L2PConfig | None = None, plugins=(), *, model, optimizer, **template_kwargs):
    cfg = cfg or L2PConfig()
    vit = prompt_backbone(model, "--strategy l2p")
    return prompt_template(PromptPool(cfg, vit, prompt_generator("l2p")), "--strategy l2p", plugins, model, optimizer,
                           train_mask=cfg.train_mask, **template_kwargs)
