"""The dense suite's three tasks as one multi-task set: every scene labelled for segmentation, detection and
classification at once.

The continual dense suite (benchmark/streams/dense_suite.py) gives each task its own images (disjoint item pools,
written once as VOC / COCO / ImageFolder files), so no image there carries all three targets. Here the same
generator (benchmark/data/fmnist_scenes.py `compose_scenes`: 1..3 real Fashion-MNIST items per black canvas, the
same sizes, placement, threshold and void borders) draws scenes in memory, and each scene's targets go through the
dense suite's own target code (benchmark/data/dense_kinds: `DenseKind.target`, then the task kind's `pack_target`):

- `seg` (segmentation, 11 classes incl. background, 255 = void, mIoU): the scene's mask.
- `det` (detection, 10 categories, G×G grid, mAP@0.5): the tight boxes of its items.
- `cls` (classification, 10 classes, top-1): the class of the scene's largest item (box area; ties → the item
  placed first): the scene-level label of a multi-object image. The continual suite classifies single centred items,
  so this task is harder than its `t2_cls_top1` (other items distract).

Targets are the kinds' packed payload rows (float32; `MultiTaskModel` reads a packed kind's payload without the
task-id column the continual stream prepends). Images: the grey canvas as RGB in [−1, 1] (as the suite reads its
JPEGs, without the JPEG round trip), 3×S×S.

Splits: `train_size + val_size` scenes from the Fashion-MNIST training items (the first `val_size` are the validation
split), `test_size` scenes from the test items. The run seed draws the scenes (the suite's run seed draws its subsets);
a scene whose items were all dropped (nothing above threshold, or no room) has no class and is redrawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.data.dense_sources import dense_kind
from benchmark.data.fmnist_scenes import compose_scenes
from benchmark.errors import UserError
from benchmark.mtl.registries import TASK_SETS
from benchmark.mtl.task_sets.mtl_data import MTLData
from benchmark.registry import SOURCES
from benchmark.tasks import TaskSpec, kind_of

KINDS = ("segmentation", "detection", "classification")  # the dense suite's order (its KIND_ORDER)
TASK_NAMES = tuple(dense_kind(k).short for k in KINDS)  # seg, det, cls
SCENE_SEED = 3535  # with the run seed: which items, sizes and places


@dataclass(frozen=True)
class DenseTasksConfig:
    image_size: int = 64  # canvas S (the dense suite's default)
    train_size: int = 1000
    val_size: int = 200
    test_size: int = 400
    grid: int = 8  # detection grid G×G
    max_boxes: int = 8  # boxes kept per packed target

    def __post_init__(self):
        if self.image_size < 16 or self.grid < 1 or self.image_size % self.grid:
            raise UserError(f"--dense_tasks.image-size ({self.image_size}) must be ≥ 16 and divisible by "
                            f"--dense_tasks.grid ({self.grid})")
        if self.train_size < 10 or self.val_size < 0 or self.test_size < 1 or self.max_boxes < 1:
            raise UserError(f"invalid dense_tasks sizes: train {self.train_size} (>= 10), val {self.val_size} (>= 0), "
                            f"test {self.test_size} (>= 1), max boxes {self.max_boxes} (>= 1)")


def largest_item(objects: list) -> int:
    """The class of the object with the largest box (x1, y1, x2, y2); the first placed among equals."""
    areas = [(box[2] - box[0]) * (box[3] - box[1]) for _, box, _ in objects]
    return int(objects[areas.index(max(areas))][0])


def scenes(images, labels, canvas: int, count: int, rng: np.random.Generator) -> list:
    """`count` scenes with at least one object each (compose_scenes' draws, the empty ones redrawn)."""
    pool, kept = np.arange(len(labels)), []
    while len(kept) < count:
        kept += [s for s in compose_scenes(images, labels, pool, canvas, count - len(kept), rng) if s[2]]
    return kept


def _targets(scene, specs: dict, size: int) -> dict[str, torch.Tensor]:
    """One scene → {task: packed payload row}, through the dense suite's raw-target code (DenseKind.target)."""
    _, mask, objects = scene
    raw = {"segmentation": Image.fromarray(mask, "P"),
           "detection": {"boxes": torch.tensor([box for _, box, _ in objects], dtype=torch.float32),
                         "labels": [c + 1 for c, _, _ in objects], "iscrowd": [0] * len(objects)},
           "classification": largest_item(objects)}
    label_map = {c + 1: c for c in range(len(specs["det"].about["classes"]))}  # COCO category id → 0-based label
    out = {}
    for kind, name in zip(KINDS, TASK_NAMES, strict=True):
        target = dense_kind(kind).target(raw[kind], size, (1.0, 1.0), label_map)
        out[name] = kind_of(specs[name]).pack_target(target, specs[name])
    return out


def _tensors(drawn: list, specs: dict, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    grey = torch.from_numpy(np.stack([img for img, _, _ in drawn])).float() / 255
    x = ((grey - 0.5) / 0.5)[:, None].expand(-1, 3, -1, -1).contiguous()  # RGB of a grey canvas, as the suite reads
    rows = [_targets(s, specs, size) for s in drawn]
    return x, {t: torch.stack([r[t] for r in rows]) for t in TASK_NAMES}


@TASK_SETS.register("dense_tasks", config_cls=DenseTasksConfig, task_names=TASK_NAMES)
def dense_tasks(cfg: DenseTasksConfig, *, seed: int, data_root: Path, download: bool = True,
                apt_install: bool = True) -> MTLData:
    return _build(cfg or DenseTasksConfig(), seed, str(data_root), download, apt_install)


@lru_cache(maxsize=4)  # a batch runs many experiments on the same scenes; nothing mutates the tensors
def _build(cfg: DenseTasksConfig, seed: int, data_root: str, download: bool, apt_install: bool) -> MTLData:
    src = {train: SOURCES.get("fashion_mnist").build(Path(data_root), train=train, transform=None, download=download,
                                                     apt_install=apt_install) for train in (True, False)}
    classes = list(src[True].classes)
    specs = {}
    for kind, name in zip(KINDS, TASK_NAMES, strict=True):
        kind_classes = ["background", *classes] if kind == "segmentation" else classes
        specs[name] = TaskSpec(name, kind=kind, params=dense_kind(kind).spec_params(kind_classes, cfg),
                               about={"classes": kind_classes, "source": "fmnist_scenes (in memory)"})
    x, y = {}, {}
    for split, train, n in (("train", True, cfg.train_size + cfg.val_size), ("test", False, cfg.test_size)):
        ds = src[train].dataset
        rng = np.random.default_rng([SCENE_SEED, seed, int(train)])
        x[split], y[split] = _tensors(scenes(ds.data.numpy(), ds.targets.numpy(), cfg.image_size, n, rng), specs,
                                      cfg.image_size)
    x["val"], y["val"] = x["train"][:cfg.val_size], {t: v[:cfg.val_size] for t, v in y["train"].items()}
    x["train"], y["train"] = x["train"][cfg.val_size:], {t: v[cfg.val_size:] for t, v in y["train"].items()}
    sizes = {k: len(v) for k, v in x.items()}
    provenance = {"train": src[True].provenance, "test": src[False].provenance, "sizes": sizes,
                  "source": "fmnist_scenes", "scene_seed": [SCENE_SEED, seed]}
    return MTLData([specs[t] for t in TASK_NAMES], x, y, provenance)
