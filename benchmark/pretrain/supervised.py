"""The supervised upper bound of a pretraining's evaluation: the same ViT trained on the labels with the same budget.

The budget is DINO's: the same train images, epochs, batch size, AdamW with the recipe's lr (·batch/256, warm-up
then cosine) and weight-decay schedule, gradient clipping and seed; each image is seen as one global crop of the
recipe (the crops and flips DINO's global views get), and the loss is cross-entropy through a linear head on the
[CLS] feature. Its backbone is then scored like the others (k-NN and linear probe on frozen features), so the
table reads: random init < self-supervised ≤ supervised, each on the same images and protocol.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.vit_tiny import create_vit_tiny
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.multicrop import global_view
from benchmark.pretrain.train import adamw, check_precision, crop_recipe, schedules, set_step, unfuse_attention


def train_supervised(cfg: PretrainConfig, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
                     device: torch.device) -> tuple[nn.Module, dict]:
    """images N×C×H×W in [-1, 1], labels N → (the trained backbone on the CPU, eval mode; its training record)."""
    check_precision(cfg.precision, device)
    n, channels, size = len(images), images.shape[1], images.shape[-1]
    batch = min(cfg.batch_size, n)
    steps = n // batch
    torch.manual_seed(cfg.seed)
    backbone = create_vit_tiny(cfg.backbone_args, size, channels)
    net = nn.Sequential(backbone, nn.Linear(backbone.num_features, n_classes)).to(device).train()
    if device.type == "cpu":
        unfuse_attention(net)
    optimizer = adamw(net)
    sched, recipe = schedules(cfg, steps), crop_recipe(cfg, size, channels)
    gen, losses, t0 = torch.Generator().manual_seed(cfg.seed), [], time.perf_counter()
    for epoch in range(cfg.epochs):
        order, total = torch.randperm(n, generator=gen), 0.0
        for it in range(steps):
            set_step(optimizer, sched, epoch * steps + it)
            idx = order[it * batch:(it + 1) * batch]
            x = global_view(images[idx], recipe, gen).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            optimizer.step()
            total += loss.item()
        losses.append(total / steps)
        print(f"[pretrain] supervised bound, epoch {epoch + 1}/{cfg.epochs}: cross-entropy {losses[-1]:.4f}",
              file=sys.stderr)
    record = {"epochs": cfg.epochs, "train_images": n, "epoch_losses": losses,
              "train_wall_s": round(time.perf_counter() - t0, 1)}
    return backbone.cpu().eval(), record
