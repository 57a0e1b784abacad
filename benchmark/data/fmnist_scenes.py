"""Offline dense tasks built from real Fashion-MNIST items, written once in the real on-disk formats.

Task 0 = segmentation (Pascal VOC 2012 layout), 1 = detection (COCO layout), 2 = classification (ImageFolder), so
the torchvision classes that read VOC / COCO / ImageFolder read these scenes unchanged. Each task draws its items
from its own pool (a seeded 3-way split of the train items and of the test items), so no item is seen by two tasks.

A scene is a black `canvas`×`canvas` image holding 1..3 items, each rescaled to a side in
[ITEM_FRAC[0], ITEM_FRAC[1]] × canvas and placed so that no two squares overlap (rejection sampling). Per pixel of
an item with intensity v: v > THRESHOLD → class + 1 (VOC: 0 = background), 0 < v ≤ THRESHOLD → 255 (void, like
VOC's object borders). A box is the tight xyxy box (x2, y2 exclusive) of its item's pixels above THRESHOLD.

Layout under `<data_root>/fmnist_scenes/<key>/` (key = sha256 of the generation parameters and the Fashion-MNIST
files, so a different canvas or count is a different folder and a folder is never edited):
    VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png, ImageSets/Segmentation/{train,val}.txt}
    coco/{images/{train,val}/<id>.jpg, annotations/instances_{train,val}.json}
    classification/{train,val}/<class:02d>_<slug>/<id>.png
    manifest.json  (parameters, counts, and the Fashion-MNIST item index behind every image)
Generation uses a fixed seed, independent of the run seed: all runs share one cache; the run seed picks subsets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.data.fashion_mnist import RAW_FILES, ensure_files, raw_folder
from benchmark.data.source import file_digest
from benchmark.registry import SOURCES

FORMAT_VERSION = 1
GEN_SEED = 0
ITEMS = (1, 3)  # items per segmentation/detection scene, inclusive
ITEM_FRAC = (20 / 64, 36 / 64)  # item side as a fraction of the canvas: 20..36 px on the default 64 px canvas
THRESHOLD = 40  # uint8 intensity; fainter item pixels are ambiguous (void), as VOC's object borders
PLACE_TRIES = 50
TASKS = ("segmentation", "detection", "classification")  # the layout's task order: which item pool each task draws
SPLITS = ("train", "val")  # VOC/COCO name the test split "val"


def voc_palette() -> list[int]:
    """VOC's colour map (bit-interleaved class index), 256 RGB triples; 255 comes out cream as in VOC."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _item_sides(canvas: int) -> tuple[int, int]:
    return max(1, round(ITEM_FRAC[0] * canvas)), max(1, round(ITEM_FRAC[1] * canvas))


class _Items:
    """Hands out a pool's items in a seeded order, cycling only when the pool runs out (tiny test pools)."""

    def __init__(self, pool: np.ndarray, rng: np.random.Generator):
        self.order, self.pos = rng.permutation(pool), 0

    def next(self) -> int:
        i = int(self.order[self.pos % len(self.order)])
        self.pos += 1
        return i


def _scene(images, labels, items: _Items, canvas: int, rng, n_items: int):
    """One canvas: (uint8 image H×W, uint8 mask H×W, [(class, [x1, y1, x2, y2], item index)])."""
    lo, hi = _item_sides(canvas)
    img = np.zeros((canvas, canvas), np.uint8)
    mask = np.zeros((canvas, canvas), np.uint8)
    placed, objects = [], []
    for _ in range(n_items):
        idx, side = items.next(), int(rng.integers(lo, hi + 1))
        patch = np.asarray(Image.fromarray(images[idx]).resize((side, side), Image.BILINEAR))
        ys, xs = np.nonzero(patch > THRESHOLD)
        if len(ys) == 0:  # nothing above threshold: no class pixels, no box
            continue
        for _ in range(PLACE_TRIES):
            x, y = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
            if all(x + side <= a or a + s <= x or y + side <= b or b + s <= y for a, b, s in placed):
                break
        else:
            continue  # crowded canvas: drop this item rather than overlap
        placed.append((x, y, side))
        img[y : y + side, x : x + side] = patch
        region = np.where(patch > THRESHOLD, labels[idx] + 1, np.where(patch > 0, 255, 0))
        mask[y : y + side, x : x + side] = region
        box = [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1]
        objects.append((int(labels[idx]), box, idx))
    return img, mask, objects


def compose_scenes(images, labels, pool: np.ndarray, canvas: int, count: int, rng: np.random.Generator) -> list:
    """`count` scenes drawn as the segmentation and detection tasks draw theirs (items of `pool` in a seeded order,
    ITEMS items per scene): [(uint8 image H×W, uint8 mask H×W, [(class, [x1, y1, x2, y2], item index)])], every
    target of one scene at once (the multi-task set of benchmark/mtl/task_sets/dense_tasks.py labels one image for
    every task)."""
    items = _Items(pool, rng)
    return [_scene(images, labels, items, canvas, rng, int(rng.integers(ITEMS[0], ITEMS[1] + 1)))
            for _ in range(count)]


def _save_jpg(gray: np.ndarray, path: Path) -> None:
    Image.fromarray(gray).convert("RGB").save(path, quality=95)


def _write_task(task: str, out: Path, split: str, images, labels, classes, pool, canvas, count, rng) -> list:
    """Write `count` images of one task and split; return the item indices behind each image."""
    items, record = _Items(pool, rng), []
    voc, coco = out / "VOCdevkit" / "VOC2012", out / "coco"
    coco_json = {"images": [], "annotations": [],
                 "categories": [{"id": c + 1, "name": n} for c, n in enumerate(classes)]}
    for i in range(count):
        name = f"{split}_{i:06d}"
        if task == "classification":
            lo, hi = _item_sides(canvas)
            idx, side = items.next(), int(rng.integers(lo, hi + 1))
            img = np.zeros((canvas, canvas), np.uint8)
            o = (canvas - side) // 2
            img[o : o + side, o : o + side] = np.asarray(Image.fromarray(images[idx]).resize((side, side),
                                                                                             Image.BILINEAR))
            c = int(labels[idx])
            Image.fromarray(img).save(out / "classification" / split / f"{c:02d}_{slug(classes[c])}" / f"{name}.png")
            record.append([idx])
            continue
        img, mask, objects = _scene(images, labels, items, canvas, rng, int(rng.integers(ITEMS[0], ITEMS[1] + 1)))
        record.append([o[2] for o in objects])
        if task == "segmentation":
            _save_jpg(img, voc / "JPEGImages" / f"{name}.jpg")
            png = Image.fromarray(mask, "P")
            png.putpalette(voc_palette())
            png.save(voc / "SegmentationClass" / f"{name}.png")
        else:
            _save_jpg(img, coco / "images" / split / f"{name}.jpg")
            coco_json["images"].append({"id": i + 1, "file_name": f"{name}.jpg", "width": canvas, "height": canvas})
            for c, (x1, y1, x2, y2), idx in objects:
                coco_json["annotations"].append({
                    "id": len(coco_json["annotations"]) + 1, "image_id": i + 1, "category_id": c + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                    "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], "fmnist_index": idx})
    if task == "segmentation":
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(f"{split}_{i:06d}\n" for i in range(count)))
    elif task == "detection":
        (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco_json))
    return record


def generate(out: Path, train, test, classes, canvas: int, counts: dict) -> dict:
    """Write every task and split into `out` (which must not exist); return the per-image item indices."""
    voc = out / "VOCdevkit" / "VOC2012"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation",
              out / "coco" / "annotations"):
        d.mkdir(parents=True)
    for split in SPLITS:
        (out / "coco" / "images" / split).mkdir(parents=True)
        for c, n in enumerate(classes):  # every class folder, even empty: ImageFolder's indices must not shift
            (out / "classification" / split / f"{c:02d}_{slug(n)}").mkdir(parents=True)
    rng = np.random.default_rng(GEN_SEED)
    items = {}
    for split, (images, labels) in zip(SPLITS, (train, test), strict=True):
        pools = np.array_split(rng.permutation(len(labels)), len(TASKS))  # disjoint item pools, one per task
        for task, pool in zip(TASKS, pools, strict=True):
            items.setdefault(task, {})[split] = _write_task(task, out, split, images, labels, classes, pool,
                                                            canvas, counts[split], rng)
    return items


def _fmnist_digest(data_root: Path, download: bool, apt_install: bool) -> str:
    """sha256 of the raw Fashion-MNIST files (made present first), memoised per file set (path, size, mtime)."""
    ensure_files(data_root, download=download, apt_install=apt_install)
    paths = [raw_folder(data_root) / f for f in RAW_FILES]
    stamp = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    if stamp not in _DIGESTS:
        _DIGESTS[stamp] = file_digest(paths)
    return _DIGESTS[stamp]


_DIGESTS: dict[tuple, str] = {}


def ensure_fmnist_scenes(data_root: Path, *, n_train: int, n_test: int, canvas: int = 64,
                         download: bool = True, apt_install: bool = True) -> tuple[Path, dict]:
    """The scene folder for these parameters (generated on first use); return (folder, provenance).

    A cached folder costs one look at the Fashion-MNIST files (hashed once per process); the images are decoded
    only to generate."""
    data_root = Path(data_root)
    params = {"format_version": FORMAT_VERSION, "canvas": canvas, "items_per_scene": list(ITEMS),
              "item_side_px": list(_item_sides(canvas)), "threshold": THRESHOLD, "seed": GEN_SEED,
              "counts_per_task": {"train": n_train, "val": n_test},
              "fashion_mnist_sha256": _fmnist_digest(data_root, download, apt_install)}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    folder = data_root / "fmnist_scenes" / key
    provenance = {"source": "fmnist_scenes", "path": str(folder.resolve()), "key": key, **params}
    if (folder / "manifest.json").is_file():
        return folder, provenance
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    src = {train: SOURCES.get("fashion_mnist").build(data_root, train=train, transform=None, download=download,
                                                     apt_install=apt_install) for train in (True, False)}
    try:
        data = {s: (src[t].dataset.data.numpy(), src[t].dataset.targets.numpy()) for s, t in (("train", True),
                                                                                             ("val", False))}
        items = generate(tmp, data["train"], data["val"], list(src[True].classes), canvas,
                         {"train": n_train, "val": n_test})
        manifest = {**params, "key": key, "classes": list(src[True].classes), "tasks": list(TASKS),
                    "counts": {t: {s: len(items[t][s]) for s in SPLITS} for t in TASKS}, "fmnist_items": items}
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        try:
            os.rename(tmp, folder)  # atomic: readers see the whole folder or none
        except OSError:
            if not (folder / "manifest.json").is_file():  # not a lost race with another process: a real error
                raise
            shutil.rmtree(tmp)  # another process generated the same folder first
            return folder, provenance
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"[data] fmnist_scenes: generated {folder} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return folder, provenance
