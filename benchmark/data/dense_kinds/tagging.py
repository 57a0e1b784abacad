"""Tagging: which object categories an image holds, a multi-label target (task kind `multilabel`), read from the
detection annotations: the offline scenes' COCO folder (1–3 Fashion-MNIST items per scene, 10 categories) or COCO
2017 (80 categories, the usual multi-label benchmark). The raw target's labels (crowd regions included: a crowd of
people is people present) become {"tags": float32 L, 1 where a category is present}. The scenes are the detection
task's: a stream holding both tasks reads its own seeded subset of the same images for each."""

from __future__ import annotations

import torch

from benchmark.data.dense_kinds.detection import Detection
from benchmark.data.dense_sources import DENSE_KINDS


@DENSE_KINDS.register("tagging")
class Tagging(Detection):
    short = "tag"
    task_kind = "multilabel"

    def target(self, raw, size: int, scale: tuple[float, float], label_map) -> dict:
        tags = torch.zeros(len(label_map))
        tags[[label_map[int(c)] for c in raw.get("labels", [])]] = 1.0
        return {"tags": tags}

    def spec_params(self, classes: list[str], cfg) -> dict:
        return {"num_labels": len(classes)}
