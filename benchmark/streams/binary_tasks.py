"""The Hat Swap binary tasks: positive class 1 vs {4, 7}; 2 vs {5, 6}; 3 vs {8, 9}.

Task t = row t of TASKS; local label 1 = the positive class, 0 = either negative class. Training data is a seeded,
class-stratified subsample (the three source classes keep their 1:1:1 ratio, so 1/3 of each task is positive and
always answering "negative" scores 0.667); the test data is every test image of the task's classes, or a
stratified subsample of `test_per_task`.

`head`: softmax = kind `binary` (2 logits, cross-entropy); sigmoid = kind `binary_sigmoid` (1 logit, sigmoid + BCE,
threshold 0.5, as the Hat Swap notebooks: benchmark/tasks/kinds/binary_sigmoid.py).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import transforms

from benchmark.errors import UserError
from benchmark.registry import SOURCES, STREAMS
from benchmark.streams.task_stream import Benchmark
from benchmark.tasks import TaskSpec

TASKS = ((1, (4, 7)), (2, (5, 6)), (3, (8, 9)))  # (positive class, negative classes) per task
HEAD_KINDS = {"softmax": "binary", "sigmoid": "binary_sigmoid"}  # --binary_tasks.head → the tasks' kind


@dataclass(frozen=True)
class BinaryTasksConfig:
    source: str = "fashion_mnist"  # fashion_mnist (offline default) | cifar10 (the paper setting)
    train_per_task: int = 2000  # seeded, class-stratified subsample of the task's training images; 0 = all
    test_per_task: int = 0  # 0 = every test image of the task's three classes
    image_size: int = 0  # 0 = the source's native size (28 or 32 px)
    head: str = field(default="softmax", metadata={"choices": tuple(HEAD_KINDS)})  # each task's output layer

    def __post_init__(self):
        for name in ("train_per_task", "test_per_task", "image_size"):
            if getattr(self, name) < 0:
                raise UserError(f"invalid value for --binary_tasks.{name.replace('_', '-')}: {getattr(self, name)}")


def stratified_subsample(labels: np.ndarray, classes: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of samples of `classes`; if n > 0, n of them drawn so that each class keeps its share."""
    pools = [np.flatnonzero(labels == c) for c in classes]
    total = sum(len(p) for p in pools)
    if n == 0 or n >= total:
        return np.sort(np.concatenate(pools))
    quotas = [len(p) * n // total for p in pools]
    for i in range(n - sum(quotas)):  # hand out the rounding remainder one by one
        quotas[i % len(quotas)] += 1
    return np.sort(np.concatenate([rng.choice(p, q, replace=False) for p, q in zip(pools, quotas, strict=True)]))


@lru_cache(maxsize=8)  # one process may run many (strategy, seed) pairs over the same files
def load_source(source: str, root: str, train: bool, image_size: int, download: bool, apt_install: bool):
    """A registered image source's split, resized to `image_size` and normalised to [−1, 1] (cached per process)."""
    entry = SOURCES.get(source)
    native, ch = entry.meta.native_size, entry.meta.channels
    tf = [transforms.ToTensor()]
    if image_size and image_size != native:
        tf.append(transforms.Resize(image_size, antialias=True))
    tf.append(transforms.Normalize((0.5,) * ch, (0.5,) * ch))  # [0, 1] → [-1, 1]
    return entry.build(Path(root), train=train, transform=transforms.Compose(tf), download=download,
                       apt_install=apt_install)


_MATERIALIZED: OrderedDict = OrderedDict()  # (id of a cached source split, sha1 of idx) → images, least recent first
MATERIALIZED_BYTES = 512 * 2**20  # what the process keeps; a tensor over 1/8 of it is not kept


def materialize_images(ds, idx: np.ndarray) -> torch.Tensor:
    """Run the source's transforms once; epochs and evaluations then index a tensor. Kept per process (the same
    subsample of the same `load_source` split is reused by every strategy of a batch on that seed); nothing mutates
    the tensor. Keyed by the split object's id, which load_source's cache keeps alive, and the indices' digest."""
    key = (id(ds), hashlib.sha1(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest())
    if key in _MATERIALIZED:
        _MATERIALIZED.move_to_end(key)
        return _MATERIALIZED[key][1]
    loader = DataLoader(Subset(ds, idx.tolist()), batch_size=2048, shuffle=False, num_workers=0)
    images = torch.cat([x for x, _ in loader])
    size = images.element_size() * images.nelement()
    if size <= MATERIALIZED_BYTES // 8:
        _MATERIALIZED[key] = (ds, images)  # holding ds keeps its id unique while the entry lives
        while sum(v.element_size() * v.nelement() for _, v in _MATERIALIZED.values()) > MATERIALIZED_BYTES:
            _MATERIALIZED.popitem(last=False)
    return images


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
    for split, n in (("train", cfg.train_per_task), ("test", cfg.test_per_task)):
        src = load_source(cfg.source, str(data_root), split == "train", cfg.image_size, download, apt_install)
        labels = np.asarray(src.targets)
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
