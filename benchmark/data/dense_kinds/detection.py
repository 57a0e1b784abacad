"""Detection: CocoDetection (wrapped for transforms v2: boxes xyxy) on the offline scenes' COCO folder, or COCO 2017
(80 categories); the raw target's boxes are scaled by S/W, S/H, its category ids become 0-based labels in sorted
category-id order, and COCO's crowd regions are kept, to be ignored as COCO's evaluation does."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2

from benchmark.data.dense_sources import DENSE_KINDS, DenseKind, RawSplit
from benchmark.errors import UserError


def coco_dataset(img_dir: Path, ann: Path) -> RawSplit:
    """CocoDetection wrapped for v2 (boxes xyxy), with {category id: 0-based label} and the class names."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "loading annotations into memory..."
        coco = CocoDetection(str(img_dir), str(ann))
    ds = wrap_dataset_for_transforms_v2(coco, target_keys=("boxes", "labels", "iscrowd"))
    cats = [coco.coco.cats[i] for i in sorted(coco.coco.getCatIds())]  # pycocotools has parsed the file already
    return RawSplit(ds, [c["name"] for c in cats], {"loader": "torchvision.datasets.CocoDetection"},
                    {c["id"]: i for i, c in enumerate(cats)})


@DENSE_KINDS.register("detection")
class Detection(DenseKind):
    short = "det"

    def scenes(self, folder: Path, vsplit: str, names: list[str]) -> RawSplit:
        return coco_dataset(folder / "coco" / "images" / vsplit,
                            folder / "coco" / "annotations" / f"instances_{vsplit}.json")

    def real(self, root: Path, vsplit: str, download: bool) -> RawSplit:
        coco = root / "coco"
        img_dir, ann = coco / f"{vsplit}2017", coco / "annotations" / f"instances_{vsplit}2017.json"
        if not (img_dir.is_dir() and ann.is_file()):
            raise UserError(f"COCO 2017 not found: put {vsplit}2017.zip's images in {img_dir} and "
                            f"annotations_trainval2017.zip's instances_{vsplit}2017.json in {ann.parent} "
                            f"(from https://cocodataset.org/#download; or pass --data-root)")
        split = coco_dataset(img_dir, ann)
        where = {"path": str(img_dir.resolve()), "annotations": str(ann.resolve())}
        return RawSplit(split.dataset, split.classes, {"source": "coco2017", **split.provenance, **where},
                        split.label_map)

    def target(self, raw, size: int, scale: tuple[float, float], label_map) -> dict:
        boxes = torch.as_tensor(raw.get("boxes", torch.zeros(0, 4))).float().reshape(-1, 4)  # no annotation: 0×4
        boxes = boxes * torch.tensor([*scale] * 2)
        labels = [label_map[int(c)] for c in raw.get("labels", [])]
        crowd = [int(c) for c in raw.get("iscrowd", [0] * len(labels))]  # kept, to be ignored (COCO's protocol)
        return {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64),
                "iscrowd": torch.tensor(crowd, dtype=torch.int64)}

    def spec_params(self, classes: list[str], cfg) -> dict:
        return {"num_classes": len(classes), "image_size": cfg.image_size, "grid": cfg.grid,
                "max_boxes": cfg.max_boxes}
