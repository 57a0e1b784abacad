"""The dense suite as a continual-learning stream: segmentation → detection → classification, one backbone.

Sources (`--dense_suite.source`):
  fmnist_scenes  offline: real Fashion-MNIST items composed into seeded scenes, written once to disk in Pascal VOC
                 (segmentation, 11 classes incl. background, 255 = void), COCO (detection, 10 categories) and
                 ImageFolder (classification, 10 classes) layouts, with disjoint item pools per task
                 (benchmark/data/fmnist_scenes.py);
  real           VOC2012 segmentation (21 classes), COCO 2017 detection (80 categories), Imagenette-160
                 classification (10 classes), each a seeded "mini" subset of `train_per_task` / `test_per_task`.
Both are read by the same torchvision dataset classes (benchmark/data/dense_sources.py). `--dense_suite.tasks`
picks other dense kinds or another order (task ids in that order), e.g. `segmentation,detection,tagging`: tagging
is a multi-label task (which categories a detection image holds, kind `multilabel`).

Every sample's target is packed into one fixed-length vector (task id, then its kind's payload:
benchmark/tasks/packed.py), so Avalanche's default collate, its replay buffer and the joint loader handle batches
that mix segmentation masks, boxes and class labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from benchmark.data.dense_sources import DENSE_KINDS, DENSE_SOURCES, dense_kind, load_dense_task
from benchmark.errors import UserError
from benchmark.registry import STREAMS
from benchmark.streams.task_stream import Benchmark
from benchmark.tasks import TaskSpec, kind_of, task_kind

KIND_ORDER = ("segmentation", "detection", "classification")  # task ids 0, 1, 2, as the dense suite's document orders


@dataclass(frozen=True)
class DenseSuiteConfig:
    source: str = "fmnist_scenes"  # fmnist_scenes (offline) | real (VOC2012 / COCO 2017 / Imagenette-160)
    image_size: int = 64  # square input S; the offline scenes are generated at this size
    train_per_task: tuple[int, ...] = (600,)  # seeded subset: one size for every task, or one per task; 0 = all
    test_per_task: int = 200
    grid: int = 8  # detection grid G×G (stride S/G)
    max_boxes: int = 8  # boxes kept per image (the largest), packed per sample
    eval_split: str = field(default="test", metadata={"choices": ("test", "val")})  # val: tune without test images
    # the tasks in stream order, comma-separated DENSE_KINDS names (benchmark/data/dense_kinds), e.g. add `tagging`
    tasks: str = ",".join(KIND_ORDER)

    def __post_init__(self):
        if self.source not in DENSE_SOURCES:
            raise UserError(f"unknown --dense_suite.source {self.source!r}; known: {', '.join(DENSE_SOURCES)}")
        if self.image_size < 16 or self.grid < 1 or self.image_size % self.grid:
            raise UserError(f"--dense_suite.image-size ({self.image_size}) must be ≥ 16 and divisible by "
                            f"--dense_suite.grid ({self.grid})")
        if self.eval_split not in ("test", "val"):
            raise UserError(f"--dense_suite.eval-split must be test or val, got {self.eval_split!r}")
        if isinstance(self.train_per_task, int):  # DenseSuiteConfig(train_per_task=600) from Python
            object.__setattr__(self, "train_per_task", (self.train_per_task,))
        kinds, known = self.kinds, DENSE_KINDS.names()
        if not kinds or len(set(kinds)) < len(kinds) or not set(kinds) <= set(known):
            raise UserError(f"--dense_suite.tasks takes distinct dense task kinds, comma-separated, from "
                            f"{', '.join(known)}; got {self.tasks!r}")
        if len(self.train_per_task) not in (1, len(kinds)):
            raise UserError(f"--dense_suite.train-per-task takes one size or {len(kinds)} (one per task: "
                            f"{', '.join(kinds)}), got {self.train_per_task}")
        if min(*self.train_per_task, self.test_per_task) < 0 or self.max_boxes < 1:
            raise UserError("--dense_suite.train-per-task/test-per-task must be ≥ 0 and max-boxes ≥ 1")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The dense task kinds of `tasks`, task ids 0, 1, ..."""
        return tuple(k.strip() for k in self.tasks.split(",") if k.strip())

    def train_size(self, task: int) -> int:
        """Training images of task `task` (0 = all): real datasets differ in size, and so may the tasks' needs."""
        return self.train_per_task[task if len(self.train_per_task) > 1 else 0]


class PackedDataset(Dataset):
    """(image, target dict) → (image, packed target row): task id, then the kind's payload, padded with -1."""

    def __init__(self, ds: Dataset, spec: TaskSpec, task_id: int, length: int):
        self.ds, self.spec, self.task_id, self.length = ds, spec, task_id, length

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        x, target = self.ds[i]
        y = torch.full((self.length,), -1.0)
        payload = kind_of(self.spec).pack_target(target, self.spec)
        y[0] = self.task_id
        y[1: 1 + len(payload)] = payload
        return x, y


def _materialize(ds: Dataset) -> TensorDataset:
    """Decode and pack once (offline scenes are small); epochs and evaluations then index tensors."""
    xs, ys = zip(*DataLoader(ds, batch_size=256, shuffle=False, num_workers=0), strict=True)
    return TensorDataset(torch.cat(xs), torch.cat(ys))


def _spec(kind: str, t: int, split, cfg: DenseSuiteConfig) -> TaskSpec:
    dense = dense_kind(kind)  # the kind's data (benchmark/data/dense_kinds): its short name, its spec parameters
    scored_by = dense.task_kind or kind
    return TaskSpec(name=f"t{t}_{dense.short}_{task_kind(scored_by).primary}", kind=scored_by,
                    params=dense.spec_params(split.classes, cfg),
                    about={"classes": list(split.classes), "source": cfg.source})


@STREAMS.register("dense_suite", config_cls=DenseSuiteConfig)
def dense_suite(cfg: DenseSuiteConfig, *, seed: int, data_root, download: bool = True,
                apt_install: bool = True) -> Benchmark:
    splits, missing = {}, []
    for s in ("train", "test"):
        splits[s] = []
        for t, kind in enumerate(cfg.kinds):
            n = cfg.train_size(t) if s == "train" else cfg.test_per_task
            try:  # "test" is evaluated; with eval_split "val", held-out train images stand in for it (tuning)
                splits[s].append(load_dense_task(kind, cfg.source, data_root, cfg.eval_split if s == "test" else s,
                                                 n=n, seed=seed + 1000 * t, image_size=cfg.image_size,
                                                 download=download, apt_install=apt_install,
                                                 n_train=cfg.train_size(t)))
            except UserError as e:  # real data: name every missing dataset at once, not one per attempt
                if DENSE_SOURCES[cfg.source].offline:
                    raise
                if str(e) not in missing:
                    missing.append(str(e))
    if missing:
        raise UserError(" | ".join(missing))
    tasks = [_spec(kind, t, splits["train"][t], cfg) for t, kind in enumerate(cfg.kinds)]
    length = 1 + max(kind_of(s).payload_len(s) for s in tasks)
    sets, frames = {}, {}
    for split, parts in splits.items():
        packed = [PackedDataset(p.dataset, tasks[t], t, length) for t, p in enumerate(parts)]
        if DENSE_SOURCES[cfg.source].offline:
            packed = [_materialize(p) for p in packed]
        sets[split] = [(p, None) for p in packed]
        # index = the image's index in its source dataset (the seeded subset), per task
        frames[split] = pd.DataFrame({"index": [int(i) for p in parts for i in p.dataset.indices],
                                      "task_id": [t for t, p in enumerate(packed) for _ in range(len(p))],
                                      "kind": [tasks[t].kind for t, p in enumerate(packed) for _ in range(len(p))]})
    provenance = {s: _provenance(parts, cfg.kinds) for s, parts in splits.items()}
    return Benchmark.of(sets["train"], sets["test"], tasks, frames, provenance)


def _provenance(parts, kinds: tuple[str, ...]) -> dict:
    """One record per split, in the shape the harness logs (source, origin, files, sha256) plus each task's own."""
    first = parts[0].provenance
    return {"source": "+".join(dict.fromkeys(p.provenance.get("source", "?") for p in parts)),
            "origin": first.get("origin", first.get("path", "?")),
            "files": ", ".join(f"{p.provenance.get('loader', '?').rsplit('.', 1)[-1]} {p.provenance.get('n', '?')}"
                               for p in parts),
            "sha256": first.get("fashion_mnist_sha256", first.get("sha256", "n/a")),
            "tasks": {kind: p.provenance for kind, p in zip(kinds, parts, strict=True)}}
