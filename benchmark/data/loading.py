"""The data API every consumer of image sources uses (the streams, benchmark/mtl/'s task sets, benchmark/pretrain/):
a registered source's split, loaded once per process; a subsample's images, materialised once; a class-stratified
subsample of its labels."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from benchmark.registry import SOURCES


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
