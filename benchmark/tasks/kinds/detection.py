"""Object detection from a feature map (the dense suite's second task), YOLO-v1-like (Redmon et al. 2016).

    head    adaptive average pool to the G×G grid, 1×1 conv → (tx, ty, tw, th, obj, class logits)
    target  payload [n, K rows of (label, x1, y1, x2, y2, crowd)]  (0-based label, pixels, crowd 0/1; unused rows −1)
    output  (5+C)×G×G, channel-first

Cell (i=row, j=col), stride s = S/G:
    decode  cx = (j + σ(tx))·s, cy = (i + σ(ty))·s, w = σ(tw)·S, h = σ(th)·S, box clipped to [0, S];
            score = σ(obj) · max softmax(cls), label = argmax; drop score < 1e-3, batched NMS (IoU 0.5), top K
    loss    each GT box goes to the cell holding its centre (the larger box wins a shared cell); per sample
            Σ_pos Σ_{tx,ty,tw,th} BCE(logit, target)  +  Σ_pos CE(cls, label)  +  Σ_{cells ∉ crowd} BCE(obj, 1[pos]),
            targets tx* = cx/s − j, ty* = cy/s − i, tw* = w/S, th* = h/S ∈ [0, 1]; mean over samples.
    crowd   COCO's iscrowd regions are ignored, as COCO's evaluation does: never positives, no objectness loss on
            the cells whose centre lies inside one, and in mAP a detection matched to one is neither TP nor FP.
    LwF     T²·KL over class logits per cell + MSE on the sigmoids of the 5 box/objectness channels
    metric  COCO-style mAP (pycocotools); primary = AP at IoU 0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from benchmark.registry import KINDS
from benchmark.tasks.distill import kl_t2
from benchmark.tasks.kind import CERTAIN
from benchmark.tasks.packed import PackedKind

SCORE_MIN, NMS_IOU, COCO_MAX_DETS = 1e-3, 0.5, 100
ROW = 6  # a packed detection target row: label, x1, y1, x2, y2, crowd


@dataclass(frozen=True)
class DetectionParams:
    num_classes: int
    image_size: int  # S, in pixels
    grid: int  # G: the output grid is G×G cells
    max_boxes: int  # K: boxes kept per packed target (the largest), and detections kept per image


class DetHead(nn.Module):
    def __init__(self, channels: int, n_classes: int, grid: int):
        super().__init__()
        self.conv, self.grid = nn.Conv2d(channels, 5 + n_classes, 1), grid

    def forward(self, f):
        if f.shape[-1] != self.grid or f.shape[-2] != self.grid:
            f = F.adaptive_avg_pool2d(f, self.grid)
        return self.conv(f)


@KINDS.register("detection", config_cls=DetectionParams)
class Detection(PackedKind):
    primary = "map_50"

    def make_head(self, spec, width: int) -> nn.Module:
        return DetHead(width, spec.params.num_classes, spec.params.grid)

    def shape(self, spec):
        g = spec.params.grid
        return (5 + spec.params.num_classes, g, g)

    def payload_len(self, spec) -> int:
        return 1 + ROW * spec.params.max_boxes

    def pack_target(self, target: dict, spec) -> torch.Tensor:
        k = spec.params.max_boxes
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"]).reshape(-1).float()
        crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(labels)))).reshape(-1).float()
        if len(boxes) > k:  # keep the K largest objects (crowd regions only if room is left), in original order
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            keep = (area - crowd * (area.max() + 1)).topk(k).indices.sort().values
            boxes, labels, crowd = boxes[keep], labels[keep], crowd[keep]
        rows = torch.full((k, ROW), -1.0)
        rows[: len(boxes), 0], rows[: len(boxes), 1:5], rows[: len(boxes), 5] = labels, boxes, crowd
        return torch.cat([torch.tensor([float(len(boxes))]), rows.flatten()])

    def unpack_target(self, y: torch.Tensor, spec) -> dict:
        n = int(y[0])
        rows = y[1: 1 + ROW * spec.params.max_boxes].reshape(-1, ROW)[:n]
        return {"boxes": rows[:, 1:5].float(), "labels": rows[:, 0].long(), "iscrowd": rows[:, 5].long()}

    def ignored_cells(self, y: torch.Tensor, spec) -> torch.Tensor:
        """B×G×G bool: cells whose centre lies inside one of the sample's crowd regions."""
        g, size, k = spec.params.grid, spec.params.image_size, spec.params.max_boxes
        b = y.shape[0]
        rows = y[:, 1: 1 + ROW * k].reshape(b, k, ROW)
        crowd = (torch.arange(k, device=y.device)[None] < y[:, :1]) & (rows[..., 5] > 0)  # B×K
        centres = (torch.arange(g, device=y.device, dtype=y.dtype) + 0.5) * size / g
        cy, cx = centres[None, :, None, None], centres[None, None, :, None]  # 1×G×1×1, 1×1×G×1
        x1, y1, x2, y2 = (rows[:, None, None, :, c] for c in range(1, 5))  # B×1×1×K
        inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2) & crowd[:, None, None, :]
        return inside.any(-1)

    def assign(self, y: torch.Tensor, spec):
        """Payload rows B × … → (positive B×G×G bool, box targets B×4×G×G, labels B×G×G long, −1 off positives).
        Crowd regions are never positives."""
        g, size, k = spec.params.grid, spec.params.image_size, spec.params.max_boxes
        stride, b = size / g, y.shape[0]
        rows = y[:, 1: 1 + ROW * k].reshape(b, k, ROW)
        valid = (torch.arange(k, device=y.device)[None] < y[:, :1]) & (rows[..., 5] <= 0)
        bi = torch.arange(b, device=y.device)[:, None].expand(b, k)[valid]
        label, x1, y1, x2, y2, _ = rows[valid].unbind(1)
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        j = (cx / stride).floor().clamp(0, g - 1).long()
        i = (cy / stride).floor().clamp(0, g - 1).long()
        # Larger box wins a shared cell: order by area (desc), then stably by cell, keep each cell's first.
        cell = bi * g * g + i * g + j
        order = (w * h).argsort(descending=True, stable=True)
        order = order[cell[order].argsort(stable=True)]
        first = torch.ones_like(order, dtype=torch.bool)
        first[1:] = cell[order][1:] != cell[order][:-1]
        keep = order[first]
        pos = torch.zeros(b, g, g, dtype=torch.bool, device=y.device)
        box_t = torch.zeros(b, 4, g, g, device=y.device, dtype=rows.dtype)  # targets: the data's dtype
        labels = torch.full((b, g, g), -1, dtype=torch.long, device=y.device)
        bk, ik, jk = bi[keep], i[keep], j[keep]
        pos[bk, ik, jk] = True
        coords = torch.stack([cx[keep] / stride - jk, cy[keep] / stride - ik, w[keep] / size, h[keep] / size], 1)
        box_t[bk, :, ik, jk] = coords.clamp(0, 1)
        labels[bk, ik, jk] = label[keep].long()
        return pos, box_t, labels

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """Payload rows → the packed grid output that decodes to their boxes and labels with score ≈ 1 (one box per
        cell, as `assign` gives; the other cells score ≈ 0, below SCORE_MIN)."""
        pos, box_t, labels = self.assign(y, spec)
        g, c = spec.params.grid, spec.params.num_classes
        out = torch.full((y.shape[0], 5 + c, g, g), -CERTAIN)
        out[:, :4] = torch.logit(box_t.clamp(1e-4, 1 - 1e-4))
        out[:, 4] = torch.where(pos, CERTAIN, -CERTAIN)
        out[:, 5:] = CERTAIN * F.one_hot(labels.clamp(min=0), c).permute(0, 3, 1, 2).float()
        return out.flatten(1)

    def loss(self, o, y, spec):
        out = self.unpack_output(o, spec)
        pos, box_t, labels = self.assign(y, spec)
        obj = F.binary_cross_entropy_with_logits(out[:, 4], pos.to(out.dtype), reduction="none")
        obj = obj.masked_fill(self.ignored_cells(y, spec) & ~pos, 0).sum()
        box = F.binary_cross_entropy_with_logits(out[:, :4].permute(0, 2, 3, 1)[pos],
                                                 box_t.permute(0, 2, 3, 1)[pos].to(out.dtype), reduction="sum")
        cls = F.cross_entropy(out[:, 5:].permute(0, 2, 3, 1)[pos], labels[pos], reduction="sum")
        return (obj + box + cls) / out.shape[0]

    def distill(self, student, teacher, spec, temperature: float):
        """T²·KL over class logits per cell (mean over cells, batch) + MSE(σ(student), σ(teacher)) on the 5
        box/objectness channels (mean over B·5·G·G elements)."""
        s, t = self.unpack_output(student, spec), self.unpack_output(teacher, spec)
        return kl_t2(s[:, 5:], t[:, 5:], temperature).mean() + F.mse_loss(s[:, :5].sigmoid(), t[:, :5].sigmoid())

    def metric(self, spec):
        return _DetMetric(self, spec)


def decode_detections(o_det: torch.Tensor, spec, limit: int | None = None) -> list[dict]:
    """B×(5+C)×G×G raw outputs → per image {"boxes" N×4 xyxy px, "scores" N, "labels" N (0-based)}, at most
    `limit` (default: the spec's max_boxes) detections per image."""
    b, _, g, _ = o_det.shape
    size = spec.params.image_size
    stride = size / g
    ii, jj = torch.meshgrid(torch.arange(g, device=o_det.device), torch.arange(g, device=o_det.device),
                            indexing="ij")
    t = o_det.sigmoid()
    cx, cy = (jj + t[:, 0]) * stride, (ii + t[:, 1]) * stride
    w, h = t[:, 2] * size, t[:, 3] * size
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).clamp(0, size).reshape(b, -1, 4)
    prob, labels = o_det[:, 5:].softmax(1).max(1)
    scores = (t[:, 4] * prob).reshape(b, -1)
    labels = labels.reshape(b, -1)
    result = []
    for n in range(b):
        keep = scores[n] >= SCORE_MIN
        bx, sc, lb = boxes[n][keep], scores[n][keep], labels[n][keep]
        kept = batched_nms(bx, sc, lb, NMS_IOU)[: limit or spec.params.max_boxes]  # by decreasing score
        result.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
    return result


class _DetMetric:
    """COCO-style mAP (pycocotools) on decoded boxes; primary = AP at IoU 0.5."""

    def __init__(self, kind: Detection, spec):
        from torchmetrics.detection import MeanAveragePrecision  # imports pycocotools: only when used

        self.kind, self.spec = kind, spec
        self.m = MeanAveragePrecision(iou_type="bbox", backend="pycocotools")

    def update(self, o, y):
        # decode on the model's device (rows are padded to the widest head: copy only the grid), then move the
        # kept boxes; COCO's protocol scores up to 100 detections per image, whatever the packed targets' cap
        grid = self.kind.unpack_output(o.detach(), self.spec).float()
        preds = decode_detections(grid, self.spec, limit=max(COCO_MAX_DETS, self.spec.params.max_boxes))
        self.m.update([{k: v.cpu() for k, v in p.items()} for p in preds],
                      [self.kind.unpack_target(row, self.spec) for row in y.detach().cpu()])

    def compute(self) -> dict:
        r = self.m.compute()
        return {"map_50": float(r["map_50"]), "map": float(r["map"]),
                "map_75": float(r["map_75"])}

    def reset(self):
        self.m.reset()
