"""A tiny synthetic multi-task set (vector inputs): three learnable tasks of three kinds, no files, no backbone."""

from __future__ import annotations

import types

import torch

from benchmark.mtl.task_sets.mtl_data import MTLData
from benchmark.tasks import TaskSpec

N_FEATURES = 12


def tiny_tasks() -> list[TaskSpec]:
    return [TaskSpec("cls", kind="multiclass", params={"num_classes": 3}),
            TaskSpec("recon", kind="reconstruction", params={"shape": [N_FEATURES], "mse_of_mean_image": 1.0}),
            TaskSpec("bin", kind="binary")]


def tiny_data(n: int = 32, seed: int = 0) -> MTLData:
    g = torch.Generator().manual_seed(seed)
    # drawn in float64, then rounded: float32's normal_ uses vectorised log/cos whose last bit differs between CPU
    # kinds (the golden tests compare these runs across machines); rounding float64 draws gives the same floats
    x = torch.randn(n, N_FEATURES, generator=g, dtype=torch.float64).float()
    y = {"cls": (x[:, :3]).argmax(1), "recon": x, "bin": (x[:, 3] > 0).long()}
    return MTLData(tiny_tasks(), {"train": x, "val": x[:8], "test": x},
                   {"train": y, "val": {k: v[:8] for k, v in y.items()}, "test": y})


def tiny_cfg(**kw):
    return types.SimpleNamespace(**({"lr": 1e-2, "weight_decay": 0.0, "seed": 0, "batch_size": 8,
                                     "eval_batch_size": 64, "grad_clip": 0.0} | kw))
