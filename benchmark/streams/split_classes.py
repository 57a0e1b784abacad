"""Split streams over any image source: the source's classes in N equal groups, one task per group (task-incremental:
one head per task, the task label known at test time).

Split Fashion-MNIST / Split CIFAR-10 (5 tasks × 2 classes) and Split CIFAR-100 (10 × 10) as the literature builds
them (Zenke et al. 2017; van de Ven & Tolias 2019; Buzzega et al. 2020): with the fixed class order (the default)
task t holds classes t·k … t·k + k − 1 of the source's own numbering (0–1, 2–3, …); `--split_classes.class-order
seeded` permutes the classes with a generator seeded from the run seed first (every strategy at one seed sees the
same order). Within a task the classes are numbered from 0 in that order (the task's head has k outputs).

This equals Avalanche's `nc_benchmark(train, test, n_experiences=N, task_labels=True, fixed_class_order=order,
class_ids_from_zero_in_each_exp=True)` over the same samples (tests/test_split_classes.py compares them sample
by sample); it is built here through the same `task_stream` as the other streams because the harness also needs
each experience's source indices (`frames`, for the feature cache and the report) and a per-task subsample
(`train_per_task`: seeded and class-stratified, as the Hat Swap binary tasks), which nc_benchmark does not give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.loading import materialize_images, stratified_subsample
from benchmark.errors import UserError
from benchmark.registry import STREAMS
from benchmark.streams.binary_tasks import (
    EVAL_SPLITS,
    check_eval_split,
    eval_splits,
    labelled_task,
    slug,
)
from benchmark.streams.task_stream import Benchmark
from benchmark.tasks import TaskSpec

ORDERS = ("fixed", "seeded")


@dataclass(frozen=True)
class SplitClassesConfig:
    source: str = "fashion_mnist"  # any registered image source: fashion_mnist (offline), cifar10, cifar100
    tasks: int = 5  # how many tasks; it must divide the source's classes, each task getting ≥ 2
    class_order: str = field(default="fixed", metadata={"choices": ORDERS})  # fixed: 0–1, 2–3, …; seeded: permuted
    train_per_task: int = 2000  # seeded, class-stratified subsample of each task's training images; 0 = all
    test_per_task: int = 0  # 0 = every test image of the task's classes
    image_size: int = 0  # 0 = the source's native size
    # val: evaluate on held-out training images (tuning; the test images are never read); test: the test split
    eval_split: str = field(default="test", metadata={"choices": EVAL_SPLITS})
    val_fraction: float = 0.1  # --eval-split val: the share of each class's training images held out

    def __post_init__(self):
        check_sizes(self, "split_classes")


def check_sizes(cfg, stream: str) -> None:
    """A per-task stream's sizes (none negative, at least one task) and its evaluated split; else one line naming
    `--<stream>.<flag>`."""
    check_eval_split(cfg, stream)
    for name in ("train_per_task", "test_per_task", "image_size"):
        if getattr(cfg, name) < 0:
            raise UserError(f"invalid value for --{stream}.{name.replace('_', '-')}: {getattr(cfg, name)}")
    if cfg.tasks < 1:
        raise UserError(f"invalid value for --{stream}.tasks: {cfg.tasks} (at least 1)")


def class_groups(n_classes: int, tasks: int, order: str, seed: int) -> list[list[int]]:
    """The source's class ids, task by task: `tasks` equal groups in the fixed or the seeded order."""
    per = n_classes // tasks if tasks else 0
    if tasks < 1 or n_classes % tasks or per < 2:
        fits = [n for n in range(1, n_classes + 1) if n_classes % n == 0 and n_classes // n >= 2]
        raise UserError(f"--split_classes.tasks {tasks} does not split {n_classes} classes into equal tasks of at "
                        f"least 2: use one of {', '.join(map(str, fits))}")
    classes = np.arange(n_classes)
    if order == "seeded":  # its own generator: the subsample's draws do not depend on whether the order is seeded
        classes = np.random.default_rng([seed, 0x5EED]).permutation(n_classes)
    return [classes[t * per:(t + 1) * per].tolist() for t in range(tasks)]


@STREAMS.register("split_classes", config_cls=SplitClassesConfig)
def split_classes(cfg: SplitClassesConfig, *, seed: int, data_root: Path, download: bool = True,
                  apt_install: bool = True) -> Benchmark:
    rng = np.random.default_rng(seed)
    sets, frames, provenance, groups = {}, {}, {}, None
    sizes = {"train": cfg.train_per_task, "test": cfg.test_per_task}
    for split, src, labels in eval_splits(cfg, seed, data_root, download, apt_install):
        n = sizes[split]
        groups = groups or class_groups(len(src.classes), cfg.tasks, cfg.class_order, seed)
        sets[split], rows = [], []
        for t, group in enumerate(groups):
            idx = stratified_subsample(labels, tuple(group), n, rng)
            y = np.asarray([group.index(c) for c in labels[idx]], dtype=np.int64)  # its place in the task's order
            task_set, frame = labelled_task(materialize_images(src.dataset, idx), idx, labels[idx], y, t)
            sets[split].append(task_set)
            rows.append(frame)
        frames[split] = pd.concat(rows, ignore_index=True)
        provenance[split] = src.provenance
        names = src.classes
    tasks = [TaskSpec(name=f"t{t}_{'_'.join(slug(names[c]) for c in group)}", kind="multiclass",
                      params={"num_classes": len(group)}, about={"classes": group})
             for t, group in enumerate(groups)]
    return Benchmark.of(sets["train"], sets["test"], tasks, frames, provenance)
