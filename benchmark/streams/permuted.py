"""Permuted streams (domain-incremental; Goodfellow et al. 2013, Kirkpatrick et al. 2017, as Avalanche's
`PermutedMNIST`): every task is the same classification of the source's classes, each task's images with its own
fixed pixel permutation. Task t's permutation is the t-th `permutation(H·W)` of `numpy.random.RandomState(seed)`,
Avalanche's draw, applied to every channel alike; task 0 is permuted too, as there. Each task's images are a
seeded, class-stratified subsample of the source (`train_per_task`, `test_per_task`; 0 = all).

Meant for `--scenario domain-il` (one head shared by every task, no task label: benchmark/harness/scenarios.py); in
task-IL each task gets its own head. `rotated` (benchmark/streams/rotated.py) builds the same way with a rotation
instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.data.loading import materialize_images, stratified_subsample
from benchmark.registry import SOURCES, STREAMS
from benchmark.streams.binary_tasks import (
    EVAL_SPLITS,
    eval_splits,
    labelled_task,
)
from benchmark.streams.split_classes import check_sizes
from benchmark.streams.task_stream import Benchmark
from benchmark.tasks import TaskSpec


@dataclass(frozen=True)
class DomainStreamConfig:
    source: str = "fashion_mnist"  # any registered image source
    tasks: int = 5  # how many domains (permutations / rotations)
    train_per_task: int = 2000  # seeded, class-stratified subsample of the training images per task; 0 = all
    test_per_task: int = 2000  # the same of the test images; 0 = all
    image_size: int = 0  # 0 = the source's native size
    # val: evaluate on held-out training images (tuning; the test images are never read); test: the test split
    eval_split: str = field(default="test", metadata={"choices": EVAL_SPLITS})
    val_fraction: float = 0.1  # --eval-split val: the share of each class's training images held out

    def __post_init__(self):
        check_sizes(self, self.stream_name())

    @classmethod
    def stream_name(cls) -> str:
        return "permuted"


def domain_stream(cfg: DomainStreamConfig, seed: int, data_root: Path, download: bool, apt_install: bool,
                  transforms: list[Callable[[torch.Tensor], torch.Tensor]], names: list[str]) -> Benchmark:
    """Task t = the source's classes on images transformed by transforms[t] (N × C × H × W → the same shape)."""
    rng = np.random.default_rng(seed)
    sets, frames, provenance = {}, {}, {}
    sizes = {"train": cfg.train_per_task, "test": cfg.test_per_task}
    for split, src, labels in eval_splits(cfg, seed, data_root, download, apt_install):
        n, classes = sizes[split], tuple(range(len(src.classes)))
        sets[split], rows = [], []
        for t, transform in enumerate(transforms):
            idx = stratified_subsample(labels, classes, n, rng)
            y = labels[idx].astype(np.int64)
            task_set, frame = labelled_task(transform(materialize_images(src.dataset, idx)), idx, y, y, t)
            sets[split].append(task_set)
            rows.append(frame)
        frames[split] = pd.concat(rows, ignore_index=True)
        provenance[split] = src.provenance
        n_classes = len(src.classes)
    tasks = [TaskSpec(name=name, kind="multiclass", params={"num_classes": n_classes}, about={"domain": name})
             for name in names]
    return Benchmark.of(sets["train"], sets["test"], tasks, frames, provenance)


def permute_pixels(order: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """N × C × H × W → each channel's H·W pixels in `order` (Avalanche's PixelsPermutation, per channel)."""
    def apply(images: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        return images.reshape(n, c, h * w)[:, :, order].reshape(n, c, h, w)
    return apply


@STREAMS.register("permuted", config_cls=DomainStreamConfig)
def permuted(cfg: DomainStreamConfig, *, seed: int, data_root: Path, download: bool = True,
             apt_install: bool = True) -> Benchmark:
    side = cfg.image_size or SOURCES.get(cfg.source).meta.native_size
    draw = np.random.RandomState(seed)
    orders = [torch.from_numpy(draw.permutation(side * side)).long() for _ in range(cfg.tasks)]
    return domain_stream(cfg, seed, data_root, download, apt_install, [permute_pixels(o) for o in orders],
                         [f"t{t}_permutation_{t}" for t in range(cfg.tasks)])
