"""One split of a dense-suite task, read through torchvision's own dataset classes, offline scenes or real data.

| kind           | fmnist_scenes (offline)              | real (paper profile)                                     |
|----------------|--------------------------------------|----------------------------------------------------------|
| segmentation   | VOCSegmentation on the scene folder  | VOCSegmentation, `<root>/VOCdevkit/VOC2012`             |
| detection      | CocoDetection + wrap v2              | CocoDetection + wrap v2, `<root>/coco/{train,val}2017`   |
| classification | ImageFolder                          | Imagenette 160px, `<root>/imagenette2-160`               |
| tagging        | CocoDetection + wrap v2 (the labels) | CocoDetection + wrap v2, `<root>/coco/{train,val}2017`   |

Each kind is a `DenseKind` registered in `DENSE_KINDS` (benchmark/data/dense_kinds/<kind>.py): where each source keeps
its images and raw targets, and the target a raw one becomes. Each source is a `DenseSource` in `DENSE_SOURCES`.

Every sample is (image float32 3×S×S in [-1, 1] = (p - 0.5) / 0.5, target): segmentation {"mask": int64 S×S, 255 =
void} (NEAREST resize), detection {"boxes": float32 K×4 xyxy in S×S pixels, "labels": int64 K, 0-based in sorted
COCO category-id order, "iscrowd": int64 K, COCO's crowd regions, kept to be ignored as COCO's evaluation does},
classification {"label": int}, tagging {"tags": float32 L, 1 for each category the detection annotations hold}.
Images are squashed to S×S (no crop), boxes scaled by S/W and S/H. `n` > 0 keeps a seeded subset of n images (sorted
indices).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from benchmark.data.fmnist_scenes import ensure_fmnist_scenes
from benchmark.errors import UserError
from benchmark.registry import Registry

DENSE_KINDS = Registry("dense task kind", "benchmark.data.dense_kinds")
SCENE_COUNTS = {"train": 3500, "test": 400}  # generated per task; `n` picks a subset of these


@dataclass(frozen=True)
class RawSplit:
    """A kind's split as a source holds it: (PIL image, raw target) pairs, before DenseView."""

    dataset: Dataset
    classes: list[str]  # segmentation: "background" at 0; detection/classification: the object classes, 0-based
    provenance: dict
    label_map: dict | None = None  # raw category id → 0-based label (COCO's ids are sparse)


class DenseKind:
    """A dense task kind's data: where each source keeps its split, and what a raw target becomes."""

    short: str  # in task names: t0_seg_miou
    task_kind: str = ""  # the task kind (benchmark/tasks/kinds) that trains and scores it; "" = the one of its own name
    ignore_index: int | None = None  # the target value that marks void pixels (segmentation's 255)

    def scenes(self, folder: Path, vsplit: str, names: list[str]) -> RawSplit:
        """The offline scenes' split (`vsplit`: train | val), `names` = the Fashion-MNIST class names."""
        raise NotImplementedError

    def real(self, root: Path, vsplit: str, download: bool) -> RawSplit:
        """The real dataset's split under `root`; a missing one is a UserError saying where to put it."""
        raise NotImplementedError

    def target(self, raw, size: int, scale: tuple[float, float], label_map: dict | None) -> dict:
        """A raw target → the target dict, for the image resized to size × size (`scale` = (S/W, S/H))."""
        raise NotImplementedError

    def spec_params(self, classes: list[str], cfg) -> dict:
        """The TaskSpec parameters of the kind (benchmark/tasks/kinds) from its classes and the stream's config."""
        raise NotImplementedError


def dense_kind(name: str) -> DenseKind:
    return DENSE_KINDS.get(name).build()


@dataclass
class DenseSplit:
    dataset: Dataset  # yields (float32 3×S×S in [-1, 1], target dict; see the module docstring)
    classes: list[str]  # segmentation: "background" at 0; detection/classification: the object classes, 0-based
    provenance: dict = field(default_factory=dict)
    ignore_index: int | None = None  # 255 for segmentation (void pixels), None otherwise


def seeded_subset(total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n of `total` items drawn without replacement; all of them when n is 0 or ≥ total."""
    if n <= 0 or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


class DenseView(Dataset):
    """A torchvision dataset's (PIL image, raw target) as (normalised S×S tensor, target dict); see module doc."""

    def __init__(self, base, kind: str, size: int, indices: np.ndarray, label_map: dict | None = None):
        self.base, self.kind, self.size, self.indices, self.label_map = base, dense_kind(kind), size, indices, label_map

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, raw = self.base[int(self.indices[i])]
        w, h = img.size
        x = pil_to_tensor(img.convert("RGB").resize((self.size, self.size), Image.BILINEAR)).float() / 255
        x = (x - 0.5) / 0.5
        return x, self.kind.target(raw, self.size, (self.size / w, self.size / h), self.label_map)


def _vsplit(split: str) -> str:
    return "train" if split == "train" else "val"  # VOC, COCO and Imagenette call the test split "val"


@dataclass(frozen=True)
class DenseSource:
    """Where a source keeps a kind's split: read(kind, root, files, image_size, download, apt_install) → RawSplit."""

    read: Callable[..., RawSplit]
    # generated here and small (fmnist_scenes): the stream decodes it once into tensors, and an error reading it is
    # one to raise at once, not a dataset to name among the missing ones
    offline: bool = False
    counts: dict | None = None  # images per task in each file split ("train", "test"): the most `n` may ask


def _read_scenes(kind: DenseKind, root: Path, files: str, size: int, download: bool, apt_install: bool) -> RawSplit:
    folder, prov = ensure_fmnist_scenes(root, canvas=size, n_train=SCENE_COUNTS["train"], n_test=SCENE_COUNTS["test"],
                                        download=download, apt_install=apt_install)
    names = json.loads((folder / "manifest.json").read_text())["classes"]
    raw = kind.scenes(folder, _vsplit(files), names)
    return RawSplit(raw.dataset, raw.classes, {**prov, **raw.provenance}, raw.label_map)


def _read_real(kind: DenseKind, root: Path, files: str, size: int, download: bool, apt_install: bool) -> RawSplit:
    return kind.real(root, _vsplit(files), download)


DENSE_SOURCES = {"fmnist_scenes": DenseSource(_read_scenes, offline=True, counts=SCENE_COUNTS),
                 "real": DenseSource(_read_real)}


def validation_subset(total: int, n_train: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n train-split items outside seeded_subset(total, n_train, seed): a validation split that
    never touches the test images nor the training subset (all the rest when n is 0)."""
    rest = np.setdiff1d(np.arange(total), seeded_subset(total, n_train, seed))
    if len(rest) == 0:
        raise UserError(f"no validation images: the training subset takes all {total} train images; lower "
                        f"--dense_suite.train-per-task")
    return rest[seeded_subset(len(rest), n, seed + 1)]


def load_dense_task(kind: str, source: str, root: Path, split: str, *, n: int, seed: int, image_size: int,
                    download: bool = True, apt_install: bool = True, n_train: int = 0) -> DenseSplit:
    """`kind` ∈ DENSE_KINDS, `source` ∈ DENSE_SOURCES, `split` ∈ {"train", "val", "test"}; n = 0 keeps all; images
    are resized to image_size × image_size (the offline scenes are generated at that size). "val" = n images of
    the train split outside the seeded training subset of `n_train` (validation_subset)."""
    if kind not in DENSE_KINDS.names():
        raise UserError(f"unknown dense task kind {kind!r}; known: {', '.join(DENSE_KINDS.names())}")
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split {split!r}; known: train, val, test")
    root = Path(root)
    if source not in DENSE_SOURCES:
        raise UserError(f"unknown dense source {source!r}; known: {', '.join(DENSE_SOURCES)}")
    files, reader, dense = "test" if split == "test" else "train", DENSE_SOURCES[source], dense_kind(kind)
    if reader.counts is not None and n > reader.counts[files]:
        raise UserError(f"{source} has {reader.counts[files]} {files} images per task; asked for {n} "
                        f"(use at most {reader.counts[files]}, or 0 for all)")
    raw = reader.read(dense, root, files, image_size, download, apt_install)
    base = raw.dataset
    idx = validation_subset(len(base), n_train, n, seed) if split == "val" else seeded_subset(len(base), n, seed)
    prov = {**raw.provenance, "kind": kind, "split": split, "n": len(idx), "n_total": len(base), "subset_seed": seed,
            "image_size": image_size}
    return DenseSplit(DenseView(base, kind, image_size, idx, raw.label_map), raw.classes, prov, dense.ignore_index)
