"""The Hat Swap binary tasks: positive class 1 vs {4, 7}; 2 vs {5, 6}; 3 vs {8, 9}.

Task t = row t of TASKS; local label 1 = the positive class, 0 = either negative class. Training data is a seeded,
class-stratified subsample (the three source classes keep their 1:1:1 ratio, so 1/3 of each task is positive and
always answering "negative" scores 0.667); the test data is every test image of the task's classes, or a
stratified subsample of `test_per_task`.

`head`: softmax = kind `binary` (2 logits, cross-entropy); sigmoid = kind `binary_sigmoid` (1 logit, sigmoid + BCE,
threshold 0.5, as the Hat Swap notebooks: benchmark/tasks/kinds/binary_sigmoid.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from benchmark.data.loading import load_source, materialize_images, stratified_subsample
from benchmark.errors import UserError
from benchmark.registry import STREAMS
from benchmark.streams.task_stream import Benchmark
from benchmark.tasks import TaskSpec

TASKS = ((1, (4, 7)), (2, (5, 6)), (3, (8, 9)))  # (positive class, negative classes) per task
HEAD_KINDS = {"softmax": "binary", "sigmoid": "binary_sigmoid"}  # --binary_tasks.head → the tasks' kind
EVAL_SPLITS = ("test", "val")
VAL_SALT = 0x7A11D  # the validation draw's own generator: np.random.default_rng([seed, VAL_SALT])


@dataclass(frozen=True)
class BinaryTasksConfig:
    source: str = "fashion_mnist"  # fashion_mnist (offline default) | cifar10 (the paper setting)
    train_per_task: int = 2000  # seeded, class-stratified subsample of the task's training images; 0 = all
    test_per_task: int = 0  # 0 = every test image of the task's three classes
    image_size: int = 0  # 0 = the source's native size (28 or 32 px)
    head: str = field(default="softmax", metadata={"choices": tuple(HEAD_KINDS)})  # each task's output layer
    # val: evaluate on held-out training images (tuning; the test images are never read); test: the test split
    eval_split: str = field(default="test", metadata={"choices": EVAL_SPLITS})
    val_fraction: float = 0.1  # --eval-split val: the share of each class's training images held out

    def __post_init__(self):
        for name in ("train_per_task", "test_per_task", "image_size"):
            if getattr(self, name) < 0:
                raise UserError(f"invalid value for --binary_tasks.{name.replace('_', '-')}: {getattr(self, name)}")
        check_eval_split(self, "binary_tasks")


def check_eval_split(cfg, stream: str) -> None:
    if cfg.eval_split not in EVAL_SPLITS:
        raise UserError(f"--{stream}.eval-split must be one of {', '.join(EVAL_SPLITS)}, got {cfg.eval_split!r}")
    if not 0 < cfg.val_fraction < 1:
        raise UserError(f"invalid value for --{stream}.val-fraction: {cfg.val_fraction} (a share in (0, 1))")


def held_out(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of the validation images: round(fraction · n_c) of each class c's, drawn by a generator of their own
    (seeded from the run seed; the stream's other draws do not move with the fraction)."""
    rng, mask = np.random.default_rng([seed, VAL_SALT]), np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        mask[rng.choice(pool, int(round(fraction * len(pool))), replace=False)] = True
    return mask


def eval_splits(cfg, seed: int, data_root: Path, download: bool, apt_install: bool):
    """[(split, source split, labels)] for "train" and "test", the split R is evaluated on. eval_split test: the
    source's own splits. val: both from the source's training split, the held-out images' labels hidden from
    "train" and the others' from "test" (as −1, a class no task has), so the test images are never read."""
    def load(train: bool):
        return load_source(cfg.source, str(data_root), train, cfg.image_size, download, apt_install)

    train = load(True)
    labels = np.asarray(train.targets)
    if cfg.eval_split == "test":
        test = load(False)
        return [("train", train, labels), ("test", test, np.asarray(test.targets))]
    val = held_out(labels, cfg.val_fraction, seed)
    return [("train", train, np.where(val, -1, labels)),
            ("test", HeldOut(train, cfg.val_fraction), np.where(val, labels, -1))]


@dataclass(frozen=True)
class HeldOut:
    """The validation images as the evaluated split: the training split's images, its provenance saying so."""

    source: Any
    fraction: float

    def __getattr__(self, name):
        return getattr(self.source, name)

    @property
    def provenance(self) -> dict:
        return self.source.provenance | {"split": "val", "held_out_fraction": self.fraction}


def labelled_task(images: torch.Tensor, idx: np.ndarray, source_labels: np.ndarray, y: np.ndarray, task: int):
    """One task's (dataset, targets), as task_stream takes it, and its rows of the stream's frame."""
    return ((TensorDataset(images, torch.from_numpy(y)), y.tolist()),
            pd.DataFrame({"index": idx, "source_label": source_labels, "target": y, "task_id": task}))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@STREAMS.register("binary_tasks", config_cls=BinaryTasksConfig)
def binary_tasks(cfg: BinaryTasksConfig, *, seed: int, data_root: Path, download: bool = True,
                 apt_install: bool = True) -> Benchmark:
    rng = np.random.default_rng(seed)
    sets, frames, provenance = {}, {}, {}
    sizes = {"train": cfg.train_per_task, "test": cfg.test_per_task}
    for split, src, labels in eval_splits(cfg, seed, data_root, download, apt_install):
        n = sizes[split]
        sets[split], rows = [], []
        for t, (pos, negs) in enumerate(TASKS):
            idx = stratified_subsample(labels, (pos, *negs), n, rng)
            y = (labels[idx] == pos).astype(np.int64)
            task_set, frame = labelled_task(materialize_images(src.dataset, idx), idx, labels[idx], y, t)
            sets[split].append(task_set)
            rows.append(frame)
        frames[split] = pd.concat(rows, ignore_index=True)
        provenance[split] = src.provenance
        classes = src.classes
    tasks = [TaskSpec(name=f"t{t}_{slug(classes[pos])}_vs_{'_'.join(slug(classes[c]) for c in negs)}",
                      kind=HEAD_KINDS[cfg.head], about={"positive": pos, "negatives": list(negs)})
             for t, (pos, negs) in enumerate(TASKS)]
    return Benchmark.of(sets["train"], sets["test"], tasks, frames, provenance)
