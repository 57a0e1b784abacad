"""Device-specific choices, kept out of the model and the strategies.

CUDA: bf16 autocast in the model's forward (HatSwapNet.autocast_dtype; bf16 needs no loss scaling, unlike fp16),
pinned host memory and non-blocking copies (Avalanche's template already pins when the device is CUDA and copies
with non_blocking=True; our own extraction loader does the same). Our streams are in-memory tensors read with
num_workers=0, so there are no workers to keep persistent. `torch.compile` of the backbone is opt-in (--compile):
it only pays when the backbone runs every step (finetune / last-k), and its gain has not been measured here.
CPU: full precision, nothing compiled, identical to the code path the tests check.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from benchmark.errors import UserError


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators (every device's) from one seed: the same config on the same device
    gives the same R."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def compute_dtype(name: str):
    """torch's default float dtype set to `name` ("float32" | "float64") while a run builds and trains: its modules'
    parameters are initialised in it, the float tensors it creates follow it, and the model casts its inputs to it.
    float64 initialises in float64 too: float32's initialisers (normal_, trunc_normal_) use vectorised approximations
    of log, cos and erfinv whose last bit differs between CPU kinds, which training would amplify."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, name))
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def prepare_runtime(cfg) -> torch.device:
    """A run's process settings from its RuntimeConfig: torch's CPU threads (`--threads`; 0 keeps torch's own) →
    the device it runs on."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return resolve_device(cfg.device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA device; use --device cpu (or auto)")
    return torch.device(name)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 on CUDA devices that support it, else None (full precision)."""
    if amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def set_autocast(model, device: torch.device, amp: bool) -> None:
    model.autocast_dtype = autocast_dtype(device, amp)


def maybe_compile(model, enabled: bool):
    """→ the model with its backbone compiled (the same shared layers and heads: `with_backbone`), or the model
    itself. Only the backbone: the heads are tiny and routed per task, so compiling them buys nothing."""
    if enabled and not isinstance(model.backbone, torch.nn.Identity):
        return model.with_backbone(torch.compile(model.backbone))
    return model


@torch.no_grad()
def latency_ms_per_image(model, samples: list[tuple[torch.Tensor, int]], device: torch.device, repeats: int = 20,
                         warmup: int = 3) -> list[float]:
    """Inference latency at batch size 1 on `device`: for each (image, task) the median over `repeats` timed
    forward passes after `warmup` untimed ones (CUDA: synchronised), in ms, in the samples' order."""
    import time

    was_training = model.training
    model.eval()
    out = []
    for x, task in samples:
        x = x.unsqueeze(0).to(device)
        times = []
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x, task)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        out.append(sorted(times)[len(times) // 2])
    model.train(was_training)
    return out
