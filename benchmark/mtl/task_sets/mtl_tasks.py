"""The multi-task experiments' task set: four tasks on every image of one source (Fashion-MNIST offline, or CIFAR-10).

- `classes` (multiclass, 10 outputs, CE, accuracy): the source class.
- `coarse` (binary, CE, accuracy): CIFAR-10 animal (bird, cat, deer, dog, frog, horse) = 1 vs vehicle = 0;
  Fashion-MNIST footwear (Sandal 5, Sneaker 7, Ankle boot 9) = 1 vs the rest = 0 (always "0" scores 0.7).
- `reconstruction` (reconstruction, decoder head with C·H·W outputs, MSE, recon_score): the input image.
- `random` (binary, CE, accuracy): a fixed random bit per source image, seeded by the image index and independent of
  the run seed — a negative-transfer probe: nothing generalises, test accuracy ≈ 0.5.

recon_score = 1 − MSE / MSE_mean, with MSE_mean the error of always predicting the mean training image (recorded
in the TaskSpec): 1 = perfect, 0 = no better than the mean image, higher is better (< 0 possible, worse than the
mean). PSNR (dB, peak-to-peak range 2 of the [−1, 1] images) is reported beside it.

Splits: a seeded class-stratified sample of `train_size + val_size` training images (val is split off it) and of
`test_size` test images (0 = all).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from benchmark.data.loading import load_source, materialize_images, stratified_subsample
from benchmark.errors import UserError
from benchmark.mtl.registries import TASK_SETS
from benchmark.mtl.task_sets.mtl_data import MTLData
from benchmark.registry import SOURCES
from benchmark.tasks import TaskSpec

COARSE = {  # source → (positive classes, what they are)
    "fashion_mnist": ((5, 7, 9), "footwear (Sandal, Sneaker, Ankle boot) vs the rest"),
    "cifar10": ((2, 3, 4, 5, 6, 7), "animal vs non-animal (vehicle)"),
}
RANDOM_LABEL_SEED = 3003  # fixed: the random task's labels belong to the images, not to a run


@dataclass(frozen=True)
class MtlTasksConfig:
    source: str = "fashion_mnist"  # fashion_mnist (offline default) | cifar10
    train_size: int = 3000
    val_size: int = 500
    test_size: int = 2000  # 0 = the whole test split
    image_size: int = 0  # 0 = native (28 or 32 px)

    def __post_init__(self):
        if self.train_size < 10 or self.val_size < 0 or self.test_size < 0 or self.image_size < 0:
            raise UserError(f"invalid mtl_tasks sizes: train {self.train_size} (>= 10), val {self.val_size}, "
                            f"test {self.test_size}, image {self.image_size} (>= 0)")


def random_labels(n_source: int, split: str) -> np.ndarray:
    return np.random.default_rng([RANDOM_LABEL_SEED, int(split == "train")]).integers(0, 2, n_source)


TASK_NAMES = ("classes", "coarse", "reconstruction", "random")


@TASK_SETS.register("mtl_tasks", config_cls=MtlTasksConfig, task_names=TASK_NAMES)
def mtl_tasks(cfg: MtlTasksConfig, *, seed: int, data_root: Path, download: bool = True,
              apt_install: bool = True) -> MTLData:
    return _build(cfg or MtlTasksConfig(), seed, str(data_root), download, apt_install)


@lru_cache(maxsize=4)  # a batch runs many experiments on the same images; nothing mutates the tensors
def _build(cfg: MtlTasksConfig, seed: int, data_root: str, download: bool, apt_install: bool) -> MTLData:
    if cfg.source not in COARSE:
        SOURCES.get(cfg.source)  # unknown name → the list of known sources
        raise UserError(f"source {cfg.source!r} has no coarse grouping for mtl_tasks; use one of {sorted(COARSE)}")
    positives, coarse_doc = COARSE[cfg.source]
    rng = np.random.default_rng(seed)
    x, y, provenance = {}, {}, {}
    for split, n in (("train", cfg.train_size + cfg.val_size), ("test", cfg.test_size)):
        src = load_source(cfg.source, str(data_root), split == "train", cfg.image_size, download, apt_install)
        labels = np.asarray(src.targets)
        idx = stratified_subsample(labels, tuple(range(len(src.classes))), n, rng)
        if split == "train":
            idx = rng.permutation(idx)
            parts = {"val": idx[:cfg.val_size], "train": idx[cfg.val_size:]}
        else:
            parts = {"test": idx}
        rand = random_labels(len(labels), split)
        for name, ids in parts.items():
            imgs = materialize_images(src.dataset, ids)
            x[name] = imgs
            y[name] = {"classes": torch.from_numpy(labels[ids]).long(),
                       "coarse": torch.from_numpy(np.isin(labels[ids], positives)).long(),
                       "reconstruction": imgs,
                       "random": torch.from_numpy(rand[ids]).long()}
        provenance[split] = src.provenance
        classes = src.classes
    if len(x["train"]) == 0:
        raise UserError("mtl_tasks: no training images; raise --mtl_tasks.train-size")
    shape = tuple(x["train"].shape[1:])
    mean_image = x["train"].mean(dim=0, keepdim=True)
    mse_of_mean = float((x["test"] - mean_image).pow(2).mean())
    tasks = [
        TaskSpec("classes", kind="multiclass", params={"num_classes": len(classes)},
                 about={"classes": list(classes)}),
        TaskSpec("coarse", kind="binary", about={"positive_classes": list(positives), "grouping": coarse_doc}),
        TaskSpec("reconstruction", kind="reconstruction",
                 params={"shape": shape, "mse_of_mean_image": mse_of_mean, "value_range": 2.0}),
        TaskSpec("random", kind="binary",
                 about={"labels": f"fixed random bit per source image (seed {RANDOM_LABEL_SEED})"}),
    ]
    sizes = {k: len(v) for k, v in x.items()}
    return MTLData(tasks, x, y, provenance | {"sizes": sizes, "source": cfg.source})
