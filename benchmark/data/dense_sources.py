"""One split of a dense-suite task, read through torchvision's own dataset classes, offline scenes or real data.

| kind           | fmnist_scenes (offline)              | real (paper profile)                                     |
|----------------|--------------------------------------|----------------------------------------------------------|
| segmentation   | VOCSegmentation on the scene folder  | VOCSegmentation, `<root>/VOCdevkit/VOC2012`             |
| detection      | CocoDetection + wrap v2              | CocoDetection + wrap v2, `<root>/coco/{train,val}2017`   |
| classification | ImageFolder                          | Imagenette 160px, `<root>/imagenette2-160`               |

Every sample is (image float32 3×S×S in [-1, 1] = (p - 0.5) / 0.5, target): segmentation {"mask": int64 S×S, 255 =
void} (NEAREST resize), detection {"boxes": float32 K×4 xyxy in S×S pixels, "labels": int64 K, 0-based in sorted
COCO category-id order, "iscrowd": int64 K, COCO's crowd regions, kept to be ignored as COCO's evaluation does},
classification {"label": int}. Images are squashed to S×S (no crop), boxes scaled by S/W and S/H. `n` > 0 keeps a
seeded subset of n images (sorted indices).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CocoDetection, ImageFolder, Imagenette, VOCSegmentation, wrap_dataset_for_transforms_v2
from torchvision.transforms.functional import pil_to_tensor

from benchmark.data.fmnist_scenes import ensure_fmnist_scenes
from benchmark.data.source import network_timeout
from benchmark.dense import KIND_ORDER
from benchmark.errors import UserError

DENSE_SOURCES = ("fmnist_scenes", "real")
SCENE_COUNTS = {"train": 3500, "test": 400}  # generated per task; `n` picks a subset of these
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


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
        self.base, self.kind, self.size, self.indices, self.label_map = base, kind, size, indices, label_map

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, raw = self.base[int(self.indices[i])]
        w, h = img.size
        x = pil_to_tensor(img.convert("RGB").resize((self.size, self.size), Image.BILINEAR)).float() / 255
        x = (x - 0.5) / 0.5
        if self.kind == "segmentation":
            mask = np.array(raw.resize((self.size, self.size), Image.NEAREST))  # dtype=int64 here would read 0/1
            return x, {"mask": torch.from_numpy(mask.astype(np.int64))}
        if self.kind == "classification":
            return x, {"label": int(raw)}
        boxes = torch.as_tensor(raw.get("boxes", torch.zeros(0, 4))).float().reshape(-1, 4)  # no annotation: 0×4
        boxes = boxes * torch.tensor([self.size / w, self.size / h] * 2)
        labels = [self.label_map[int(c)] for c in raw.get("labels", [])]
        crowd = [int(c) for c in raw.get("iscrowd", [0] * len(labels))]  # kept, to be ignored (COCO's protocol)
        return x, {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64),
                   "iscrowd": torch.tensor(crowd, dtype=torch.int64)}


def _coco(img_dir: Path, ann: Path):
    """CocoDetection wrapped for v2 (boxes xyxy), plus {category id: 0-based label} and the class names."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "loading annotations into memory..."
        coco = CocoDetection(str(img_dir), str(ann))
    ds = wrap_dataset_for_transforms_v2(coco, target_keys=("boxes", "labels", "iscrowd"))
    cats = [coco.coco.cats[i] for i in sorted(coco.coco.getCatIds())]  # pycocotools has parsed the file already
    return ds, {c["id"]: i for i, c in enumerate(cats)}, [c["name"] for c in cats]


def _vsplit(split: str) -> str:
    return "train" if split == "train" else "val"  # VOC, COCO and Imagenette call the test split "val"


def _scenes(kind: str, root: Path, split: str, size: int, download: bool, apt_install: bool):
    folder, prov = ensure_fmnist_scenes(root, canvas=size, n_train=SCENE_COUNTS["train"], n_test=SCENE_COUNTS["test"],
                                        download=download, apt_install=apt_install)
    vsplit = _vsplit(split)
    names = json.loads((folder / "manifest.json").read_text())["classes"]
    if kind == "segmentation":
        ds = VOCSegmentation(str(folder), year="2012", image_set=vsplit, download=False)
        return ds, None, ["background", *names], {**prov, "loader": "torchvision.datasets.VOCSegmentation"}
    if kind == "detection":
        ds, label_map, classes = _coco(folder / "coco" / "images" / vsplit,
                                       folder / "coco" / "annotations" / f"instances_{vsplit}.json")
        return ds, label_map, classes, {**prov, "loader": "torchvision.datasets.CocoDetection"}
    ds = ImageFolder(str(folder / "classification" / vsplit), allow_empty=True)  # folders "00_t-shirt-top".."09_…"
    return ds, None, names, {**prov, "loader": "torchvision.datasets.ImageFolder"}


def _real(kind: str, root: Path, split: str, download: bool):
    vsplit = _vsplit(split)
    if kind == "segmentation":
        voc = root / "VOCdevkit" / "VOC2012"
        missing = not (voc / "ImageSets" / "Segmentation" / f"{vsplit}.txt").is_file()
        fix = (f"VOC2012 not found under {voc}; download VOCtrainval_11-May-2012.tar from "
               f"http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and extract it in {root} (or pass --data-root)")
        try:
            if missing and not download:
                raise UserError(fix)
            with network_timeout(20):  # download only when missing: torchvision would fetch the 2 GB tar again
                ds = VOCSegmentation(str(root), year="2012", image_set=vsplit, download=missing)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError on bad md5
            raise UserError(f"{fix} (download failed: {str(e).splitlines()[0][:120]})") from None
        return ds, None, VOC_CLASSES, {"source": "voc2012", "loader": "torchvision.datasets.VOCSegmentation",
                                       "path": str(voc.resolve())}
    if kind == "detection":
        coco = root / "coco"
        img_dir, ann = coco / f"{vsplit}2017", coco / "annotations" / f"instances_{vsplit}2017.json"
        if not (img_dir.is_dir() and ann.is_file()):
            raise UserError(f"COCO 2017 not found: put {vsplit}2017.zip's images in {img_dir} and "
                            f"annotations_trainval2017.zip's instances_{vsplit}2017.json in {ann.parent} "
                            f"(from https://cocodataset.org/#download; or pass --data-root)")
        ds, label_map, classes = _coco(img_dir, ann)
        return ds, label_map, classes, {"source": "coco2017", "loader": "torchvision.datasets.CocoDetection",
                                        "path": str(img_dir.resolve()), "annotations": str(ann.resolve())}
    folder = root / "imagenette2-160"
    fix = (f"Imagenette not found under {folder}; download "
           f"{Imagenette._ARCHIVES['160px'][0]} and extract it in {root} (or pass --data-root)")
    try:
        if not folder.is_dir() and not download:
            raise UserError(fix)
        with network_timeout(20):
            ds = Imagenette(str(root), split=vsplit, size="160px", download=download)
    except (OSError, RuntimeError) as e:
        raise UserError(f"{fix} (download failed: {str(e).splitlines()[0][:120]})") from None
    return ds, None, [names[0] for names in ds.classes], {
        "source": "imagenette", "loader": "torchvision.datasets.Imagenette", "path": str(folder.resolve())}


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
    """`kind` ∈ KIND_ORDER, `source` ∈ DENSE_SOURCES, `split` ∈ {"train", "val", "test"}; n = 0 keeps all; images
    are resized to image_size × image_size (the offline scenes are generated at that size). "val" = n images of
    the train split outside the seeded training subset of `n_train` (validation_subset)."""
    if kind not in KIND_ORDER:
        raise UserError(f"unknown dense task kind {kind!r}; known: {', '.join(KIND_ORDER)}")
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split {split!r}; known: train, val, test")
    root = Path(root)
    if source not in DENSE_SOURCES:
        raise UserError(f"unknown dense source {source!r}; known: {', '.join(DENSE_SOURCES)}")
    files = "test" if split == "test" else "train"
    if source == "fmnist_scenes":
        if n > SCENE_COUNTS[files]:
            raise UserError(f"fmnist_scenes has {SCENE_COUNTS[files]} {files} images per task; asked for {n} "
                            f"(use at most {SCENE_COUNTS[files]}, or 0 for all)")
        base, label_map, classes, prov = _scenes(kind, root, files, image_size, download, apt_install)
    else:
        base, label_map, classes, prov = _real(kind, root, files, download)
    idx = validation_subset(len(base), n_train, n, seed) if split == "val" else seeded_subset(len(base), n, seed)
    prov = {**prov, "kind": kind, "split": split, "n": len(idx), "n_total": len(base), "subset_seed": seed,
            "image_size": image_size}
    return DenseSplit(DenseView(base, kind, image_size, idx, label_map), classes, prov,
                      255 if kind == "segmentation" else None)
