"""Segmentation: VOCSegmentation on the offline scenes' VOC folder, or VOC2012 (21 classes); the raw target is the
class-index mask image (255 = void), resized with NEAREST to {"mask": int64 S×S}."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import VOCSegmentation

from benchmark.data.dense_sources import DENSE_KINDS, DenseKind, RawSplit
from benchmark.data.source import network_timeout
from benchmark.errors import UserError

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
VOID = 255


@DENSE_KINDS.register("segmentation")
class Segmentation(DenseKind):
    short = "seg"
    ignore_index = VOID

    def scenes(self, folder: Path, vsplit: str, names: list[str]) -> RawSplit:
        ds = VOCSegmentation(str(folder), year="2012", image_set=vsplit, download=False)
        return RawSplit(ds, ["background", *names], {"loader": "torchvision.datasets.VOCSegmentation"})

    def real(self, root: Path, vsplit: str, download: bool) -> RawSplit:
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
        return RawSplit(ds, VOC_CLASSES, {"source": "voc2012", "loader": "torchvision.datasets.VOCSegmentation",
                                          "path": str(voc.resolve())})

    def target(self, raw, size: int, scale: tuple[float, float], label_map) -> dict:
        mask = np.array(raw.resize((size, size), Image.NEAREST))  # dtype=int64 here would read 0/1
        return {"mask": torch.from_numpy(mask.astype(np.int64))}

    def spec_params(self, classes: list[str], cfg) -> dict:
        return {"num_classes": len(classes), "image_size": cfg.image_size, "ignore_index": self.ignore_index}
