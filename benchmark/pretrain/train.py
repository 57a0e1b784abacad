"""DINO training (Caron et al. 2021, Algorithm 1) of a ViT backbone on unlabelled images, resumable per epoch.

One step: views = multicrop(batch); the teacher sees the 2 global views, the student all of them (both forward
passes under bf16 autocast with `--precision bf16`; the loss from their outputs in fp32); loss =
dino_loss(student, teacher, c, τ_s, τ_t(epoch)), plus `koleo_weight` × DINOv2's KoLeo term on the student's class
tokens of each global view; AdamW step on the student (lr and weight decay from cosine schedules, gradient norm
clipped, the prototypes frozen during the first `freeze_last_layer` epochs); then
θt ← EMA(θt, θs; λ_step) and c ← centre update. Every random draw (shuffling, crops) comes from one generator
seeded by the config's seed, whose state the checkpoint keeps: a resumed run takes exactly the uninterrupted run's
steps.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.errors import RunFailed, UserError
from benchmark.models.vit_tiny import create_vit_tiny
from benchmark.pretrain import artifact
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.head import DinoHead, DinoNet
from benchmark.pretrain.multicrop import CropRecipe, multicrop
from benchmark.pretrain.objective import (
    cosine_schedule,
    dino_loss,
    ema_update,
    koleo_loss,
    momentum_schedule,
    teacher_temp_schedule,
    update_center,
)


@dataclass
class DinoState:
    student: DinoNet
    teacher: DinoNet
    optimizer: torch.optim.Optimizer
    center: torch.Tensor  # 1×K
    gen: torch.Generator
    epoch: int = 0  # epochs completed
    losses: list | None = None  # mean loss per completed epoch
    seconds: float = 0.0  # training wall time over every process that trained it (resumes add up)
    trained_on: str = ""  # the device the student's parameters were on during training (before the move to the CPU)


def crop_recipe(cfg: PretrainConfig, image_size: int, channels: int) -> CropRecipe:
    patch = cfg.backbone_args.patch_size
    local = cfg.local_size or max(patch, round(image_size * 3 / 7 / patch) * patch)
    return CropRecipe(global_size=image_size, local_size=local, local_crops=cfg.local_crops, colour=channels == 3,
                      global_scale=(cfg.global_scale_min, 1.0), local_scale=(cfg.local_scale_min, cfg.global_scale_min))


def build_state(cfg: PretrainConfig, image_size: int, channels: int) -> DinoState:
    """Student and teacher start equal (DINO); biases and norm weights get no weight decay (DINO's param groups)."""
    torch.manual_seed(cfg.seed)
    backbone = create_vit_tiny(cfg.backbone_args, image_size, channels, dynamic_img_size=True)
    head = DinoHead(backbone.num_features, cfg.out_dim, cfg.head_hidden, cfg.head_bottleneck, cfg.head_bn)
    student = DinoNet(backbone, head)
    teacher = copy.deepcopy(student).requires_grad_(False)
    optimizer = adamw(student)
    center = torch.zeros(1, cfg.out_dim)
    return DinoState(student, teacher, optimizer, center, torch.Generator().manual_seed(cfg.seed), 0, [])


def adamw(net: nn.Module) -> torch.optim.AdamW:
    """AdamW with DINO's param groups: biases and norm weights (1-d) get no weight decay; lr and decay are set per
    step by `set_step`."""
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1]},
                              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=0.0)


def set_step(optimizer: torch.optim.Optimizer, sched: dict, step: int) -> None:
    """The schedules' lr and weight decay of this step (the 1-d group's decay stays 0)."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = float(sched["lr"][step])  # a Python float: numpy scalars would not pass torch.load's check
        group["weight_decay"] = float(sched["wd"][step]) if i == 0 else 0.0


def state_dict(state: DinoState, key: str) -> dict:
    return {"key": key, "epoch": state.epoch, "losses": list(state.losses), "seconds": state.seconds,
            "center": state.center,
            "student": state.student.state_dict(), "teacher": state.teacher.state_dict(),
            "optimizer": state.optimizer.state_dict(), "gen": state.gen.get_state()}


def restore(state: DinoState, saved: dict) -> None:
    state.student.load_state_dict(saved["student"])
    state.teacher.load_state_dict(saved["teacher"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.gen.set_state(saved["gen"])
    state.center, state.epoch, state.losses = saved["center"], int(saved["epoch"]), list(saved["losses"])
    state.seconds = float(saved["seconds"])


def schedules(cfg: PretrainConfig, steps: int) -> dict[str, np.ndarray]:
    """Per step: lr, weight decay, teacher momentum; per epoch: teacher temperature."""
    lr = cfg.lr * cfg.batch_size / 256  # DINO's linear scaling rule
    return {"lr": cosine_schedule(lr, cfg.min_lr, cfg.epochs, steps, cfg.warmup_epochs),
            "wd": cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, cfg.epochs, steps),
            "momentum": momentum_schedule(cfg.momentum_teacher, cfg.epochs, steps),
            "teacher_temp": teacher_temp_schedule(cfg.warmup_teacher_temp, cfg.teacher_temp,
                                                  cfg.warmup_teacher_temp_epochs, cfg.epochs)}


def train_step(state: DinoState, views: list[torch.Tensor], cfg: PretrainConfig, sched: dict, step: int) -> float:
    set_step(state.optimizer, sched, step)
    with torch.autocast(views[0].device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        teacher_out = state.teacher(views[:2])
        student_out, features = state.student(views, with_features=True)
    teacher_out, student_out = [t.float() for t in teacher_out], [s.float() for s in student_out]  # loss, centre: fp32
    loss = dino_loss(student_out, teacher_out, state.center, cfg.student_temp, sched["teacher_temp"][state.epoch])
    if cfg.koleo_weight:  # DINOv2: per global view, never between two views of one image
        loss = loss + cfg.koleo_weight * sum(koleo_loss(f.float()) for f in features[:2])
    value = loss.item()  # one .item() a step (each is a host sync on a GPU)
    if not math.isfinite(value):
        raise RunFailed(f"DINO loss is {value} at epoch {state.epoch}, step {step}; lower --lr or raise "
                        f"--warmup-teacher-temp-epochs")
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        nn.utils.clip_grad_norm_(state.student.parameters(), cfg.clip_grad)
    if state.epoch < cfg.freeze_last_layer:  # DINO: the prototypes wait one epoch, which helps optimisation
        state.student.head.prototypes.grad = None
    state.optimizer.step()
    ema_update(state.teacher, state.student, float(sched["momentum"][step]))
    state.center = update_center(state.center, teacher_out, cfg.center_momentum)
    return value


def unfuse_attention(*nets: nn.Module) -> None:
    """timm's attention as q·kᵀ → softmax → ·v instead of PyTorch's fused kernel: the same function, and on a CPU
    with 50 tokens of 4 heads × 16 dims the fused kernel is the slower (one DINO step 234 → 195 ms, 2 cores)."""
    for net in nets:
        for m in net.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 on CUDA needs compute capability 8.0 or newer (Ampere); older GPUs would emulate it, slowly."""
    if precision == "bf16" and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        raise UserError(f"--precision bf16, but {torch.cuda.get_device_name(device)} has no native bf16 (compute "
                        f"capability below 8.0); use --precision fp32")


def train(cfg: PretrainConfig, images: torch.Tensor, key: str, checkpoint, device: torch.device) -> DinoState:
    """images: N×C×H×W in [-1, 1] (no labels). Resumes from `checkpoint` (a Path) when it holds this key's state;
    saves it after every epoch. → the final state (teacher, student on the CPU)."""
    check_precision(cfg.precision, device)
    n, channels, size = len(images), images.shape[1], images.shape[-1]
    batch = min(cfg.batch_size, n)
    steps = n // batch  # DINO drops the last partial batch
    state, recipe, sched = build_state(cfg, size, channels), crop_recipe(cfg, size, channels), schedules(cfg, steps)
    state.student.to(device).train()
    state.teacher.to(device).train()  # as DINO's teacher: batch statistics in a BN head (the ViT has no BN)
    if device.type == "cpu":
        unfuse_attention(state.student, state.teacher)
    if saved := artifact.load_checkpoint(checkpoint, key):  # after .to(device): the optimizer's state follows
        restore(state, saved)
        print(f"[pretrain] resuming after epoch {state.epoch}/{cfg.epochs} from {checkpoint}", file=sys.stderr)
    state.center = state.center.to(device)
    while state.epoch < cfg.epochs:
        t0, order, total = time.perf_counter(), torch.randperm(n, generator=state.gen), 0.0
        for it in range(steps):
            views = [v.to(device) for v in multicrop(images[order[it * batch:(it + 1) * batch]], recipe, state.gen)]
            total += train_step(state, views, cfg, sched, state.epoch * steps + it)
        state.epoch += 1
        state.losses.append(total / steps)
        state.seconds += time.perf_counter() - t0
        print(f"[pretrain] epoch {state.epoch}/{cfg.epochs}: DINO{' + KoLeo' if cfg.koleo_weight else ''} loss "
              f"{total / steps:.4f} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        artifact.save_checkpoint(checkpoint, state_dict(state, key))
    state.trained_on = str(next(state.student.parameters()).device)
    state.student.cpu()
    state.teacher.cpu()
    state.center = state.center.cpu()
    return state
