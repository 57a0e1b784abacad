"""benchmark/tasks/kinds: hand-computed metrics, losses and KD terms per kind, packing, the mixed-task criterion."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from benchmark.tasks import TaskCriterion, TaskSpec, task_kind
from benchmark.tasks.kinds.detection import decode_detections

DENSE_KINDS = ("segmentation", "detection", "classification")


SEG = TaskSpec("seg", kind="segmentation", params={"num_classes": 3, "image_size": 4, "ignore_index": 255})
SEG2 = TaskSpec("seg2", kind="segmentation", params={"num_classes": 2, "image_size": 4, "ignore_index": 255})
DET = TaskSpec("det", kind="detection", params={"num_classes": 3, "image_size": 32, "grid": 4, "max_boxes": 3})
CLS = TaskSpec("cls", kind="classification", params={"num_classes": 6})
SPECS = {"segmentation": SEG, "detection": DET, "classification": CLS}


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def bce(z: float, y: float) -> float:
    """Binary cross-entropy of logit z against target y ∈ [0, 1]."""
    return -(y * math.log(sigmoid(z)) + (1 - y) * math.log(1 - sigmoid(z)))


def seg_logits(pred: torch.Tensor, c: int) -> torch.Tensor:
    """B×S×S predicted classes → packed rows whose argmax is `pred`."""
    return (F.one_hot(pred, c).permute(0, 3, 1, 2).float() * 10).flatten(1)


def det_output(boxes_labels, spec=DET, obj=30.0) -> torch.Tensor:
    """One packed detection output row whose decoding gives exactly these (x1, y1, x2, y2, label) boxes."""
    g, size = spec.params.grid, spec.params.image_size
    s = size / g
    out = torch.zeros(5 + spec.params.num_classes, g, g)
    out[4] = -obj
    for x1, y1, x2, y2, label in boxes_labels:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        i, j = int(cy // s), int(cx // s)
        out[:4, i, j] = torch.tensor([logit(cx / s - j), logit(cy / s - i), logit((x2 - x1) / size),
                                      logit((y2 - y1) / size)])
        out[4, i, j], out[5 + label, i, j] = obj, obj
    return out.flatten()[None]


def det_payload(boxes_labels, spec=DET, crowd=()) -> torch.Tensor:
    boxes = torch.tensor([b[:4] for b in boxes_labels], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([b[4] for b in boxes_labels], dtype=torch.long)
    iscrowd = torch.tensor([int(i in crowd) for i in range(len(labels))])
    return task_kind("detection").pack_target({"boxes": boxes, "labels": labels, "iscrowd": iscrowd}, spec)[None]


# --- mIoU -----------------------------------------------------------------------------------------------------


def test_miou_perfect_is_one():
    mask = torch.randint(0, 3, (2, 4, 4))
    m = task_kind("segmentation").metric(SEG)
    m.update(seg_logits(mask, 3), mask.flatten(1).float())
    assert m.compute()["miou"] == pytest.approx(1.0) and task_kind("segmentation").primary == "miou"


def test_miou_ignores_void_pixels():
    mask = torch.tensor([[0, 0, 1, 1]] * 2 + [[255, 255, 2, 2]] * 2)[None]
    scores = []
    for void_guess in (0, 1):  # whatever is predicted on void pixels
        pred = mask.clone()
        pred[mask == 255] = void_guess
        m = task_kind("segmentation").metric(SEG)
        m.update(seg_logits(pred, 3), mask.flatten(1).float())
        scores.append(m.compute()["miou"])
    assert scores == [pytest.approx(1.0), pytest.approx(1.0)]


def test_miou_two_class_hand_computed():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[:, :2] = 1  # top half class 1 (8 px)
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    pred[:, :3] = 1  # top 3 rows class 1 (12 px)
    m = task_kind("segmentation").metric(SEG2)
    m.update(seg_logits(pred, 2), target.flatten(1).float())
    # class 1: 8 / 12; class 0: 4 / 8
    assert m.compute()["miou"] == pytest.approx((8 / 12 + 4 / 8) / 2)


def test_miou_accumulates_confusion_over_split():
    t1 = torch.zeros(1, 4, 4, dtype=torch.long)
    t1[:, :2] = 1
    p1 = torch.ones(1, 4, 4, dtype=torch.long)
    t2 = p2 = torch.zeros(1, 4, 4, dtype=torch.long)
    m = task_kind("segmentation").metric(SEG2)
    for p, t in ((p1, t1), (p2, t2)):
        m.update(seg_logits(p, 2), t.flatten(1).float())
    # whole split: class 0 tp 16, fn 8 → 2/3; class 1 tp 8, fp 8 → 1/2 (per-image mean would give 0.625)
    assert m.compute()["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    m.reset()
    m.update(seg_logits(p2, 2), t2.flatten(1).float())
    assert m.compute()["miou"] == pytest.approx(1.0)


# --- mAP ------------------------------------------------------------------------------------------------------

BOX = (4.0, 6.0, 14.0, 20.0, 2)  # centre (9, 13) → cell row 1, col 1 at stride 8


def test_decoding_recovers_the_encoded_box():
    (d,) = decode_detections(task_kind("detection").unpack_output(det_output([BOX]), DET), DET)
    assert len(d["boxes"]) == 1 and d["labels"].tolist() == [2] and d["scores"][0] > 0.99
    assert torch.allclose(d["boxes"][0], torch.tensor(BOX[:4]), atol=1e-4)


def test_decoding_drops_low_scores_and_keeps_max_boxes():
    out = det_output([BOX])
    out_low = det_output([BOX], obj=10.0)
    out_low.view(8, 4, 4)[4] = -10  # every cell: σ(−10) < 1e-3
    assert len(decode_detections(task_kind("detection").unpack_output(out_low, DET), DET)[0]["boxes"]) == 0
    out.view(8, 4, 4)[4] = 0  # every cell score 0.5 · p ≥ 1e-3, boxes far apart → NMS keeps them; K = 3 left
    out.view(8, 4, 4)[2:4] = -3
    assert len(decode_detections(task_kind("detection").unpack_output(out, DET), DET)[0]["boxes"]) == 3


def test_map50_is_one_for_exact_box_and_zero_below_half_iou():
    m = task_kind("detection").metric(DET)
    m.update(det_output([BOX]), det_payload([BOX]))
    r = m.compute()
    assert r["map_50"] == pytest.approx(1.0) and "map" in r
    m.reset()
    shifted = (BOX[0] + 8, BOX[1], BOX[2] + 8, BOX[3], BOX[4])  # overlap 2/10 of the width: IoU = 28/252
    m.update(det_output([BOX]), det_payload([shifted]))
    assert m.compute()["map_50"] == pytest.approx(0.0)


CROWD = (17.0, 17.0, 29.0, 29.0, 2)  # centre (23, 23) → cell row 2, col 2; cell centres 20 and 28 inside


def test_crowd_regions_are_ignored_by_assignment_loss_and_map():
    det = task_kind("detection")
    y = det_payload([BOX, CROWD], crowd={1})
    pos, _, labels = det.assign(y, DET)
    assert pos[0].nonzero().tolist() == [[1, 1]]  # the crowd region is no positive
    assert det.ignored_cells(y, DET)[0].nonzero().tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]
    fires = det_output([BOX, CROWD])  # objectness high on the crowd cell too: no loss for it
    assert float(det.loss(fires, y, DET)) == pytest.approx(float(det.loss(det_output([BOX]), y, DET)), rel=1e-6)
    # mAP: a detection on the crowd region, scored above the true one, is neither TP nor FP (COCO's protocol);
    # with the region dropped from the targets it would be a false positive ranked first: AP@0.5 = 1/2
    fires.view(8, 4, 4)[4, 1, 1] = 2.0
    m = det.metric(DET)
    m.update(fires, y)
    assert m.compute()["map_50"] == pytest.approx(1.0)
    m = det.metric(DET)
    m.update(fires, det_payload([BOX]))
    assert m.compute()["map_50"] == pytest.approx(0.5, abs=0.01)


def test_det_pack_keeps_objects_before_crowd_regions():
    boxes = torch.tensor([[0.0, 0, 30, 30], [0, 0, 2, 2], [0, 0, 10, 10], [0, 0, 5, 5]])
    y = task_kind("detection").pack_target({"boxes": boxes, "labels": torch.arange(4),
                                        "iscrowd": torch.tensor([1, 0, 0, 0])}, DET)
    assert task_kind("detection").unpack_target(y, DET)["labels"].tolist() == [1, 2, 3]  # K = 3: the crowd left out


@pytest.mark.parametrize("kind", list(DENSE_KINDS))
def test_as_output_encodes_a_target_its_metric_scores_perfect(kind):
    if kind == "detection":
        payload = torch.cat([det_payload([BOX]), det_payload([(20.0, 2.0, 30.0, 12.0, 0), CROWD], crowd={1})])
    elif kind == "segmentation":
        mask = torch.randint(0, 3, (2, 4, 4))
        mask[0, 0, 0] = 255
        payload = mask.flatten(1).float()
    else:
        payload = torch.tensor([[4.0], [1.0], [5.0]])
    m = task_kind(kind).metric(SPECS[kind])
    m.update(task_kind(kind).as_output(payload, SPECS[kind]), payload)
    assert m.compute()[task_kind(kind).primary] == pytest.approx(1.0)


# --- top-1 / top-5 --------------------------------------------------------------------------------------------


def test_top5_at_least_top1_on_random_logits():
    torch.manual_seed(0)
    m = task_kind("classification").metric(CLS)
    m.update(torch.randn(50, 6), torch.randint(0, 6, (50, 1)).float())
    r = m.compute()
    assert r["top5"] >= r["top1"] and task_kind("classification").primary == "top1"


def test_top1_top5_hand_computed():
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1]] * 3)
    labels = torch.tensor([[0.0], [2.0], [5.0]])  # ranked 1st, 3rd, 6th
    m = task_kind("classification").metric(CLS)
    m.update(logits, labels)
    r = m.compute()
    assert r["top1"] == pytest.approx(1 / 3) and r["top5"] == pytest.approx(2 / 3)


# --- distillation ---------------------------------------------------------------------------------------------


def kl_by_hand(s: list[float], t: list[float], temp: float) -> float:
    """T² · Σ_c q_c log(q_c / p_c), q = softmax(t/T), p = softmax(s/T), in plain Python."""
    zs, zt = sum(math.exp(v / temp) for v in s), sum(math.exp(v / temp) for v in t)
    p, q = [math.exp(v / temp) / zs for v in s], [math.exp(v / temp) / zt for v in t]
    return temp**2 * sum(qc * math.log(qc / pc) for pc, qc in zip(p, q, strict=True))


@pytest.mark.parametrize("kind", list(DENSE_KINDS))
def test_distill_is_zero_when_student_equals_teacher(kind):
    spec = SPECS[kind]
    o = torch.randn(3, task_kind(kind).output_len(spec))
    assert abs(float(task_kind(kind).distill(o, o.clone(), spec, 2.0))) <= 1e-6


def test_cls_distill_matches_hand_formula_and_lwf():
    from strategies.lwf import kd_loss

    torch.manual_seed(1)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    got = float(task_kind("classification").distill(s, t, CLS, 2.0))
    assert got == pytest.approx(float(kd_loss(s, t, 2.0)), rel=1e-5)
    by_hand = [kl_by_hand(a, b, 2.0) for a, b in zip(s.tolist(), t.tolist(), strict=True)]
    assert got == pytest.approx(sum(by_hand) / 4, rel=1e-5)


def test_seg_distill_matches_pixelwise_hand_formula():
    torch.manual_seed(2)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = [kl_by_hand(s[b, :, i, j].tolist(), t[b, :, i, j].tolist(), 3.0)
                for b in range(2) for i in range(4) for j in range(4)]
    got = task_kind("segmentation").distill(s.flatten(1), t.flatten(1), SEG, 3.0)
    assert float(got) == pytest.approx(sum(expected) / len(expected), rel=1e-5)


def test_det_distill_matches_class_kl_plus_box_mse():
    torch.manual_seed(3)
    s, t = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    kl = [kl_by_hand(s[b, 5:, i, j].tolist(), t[b, 5:, i, j].tolist(), 2.0)
          for b in range(2) for i in range(4) for j in range(4)]
    pairs = zip(s[:, :5].flatten().tolist(), t[:, :5].flatten().tolist(), strict=True)
    sq = [(sigmoid(a) - sigmoid(b)) ** 2 for a, b in pairs]
    got = task_kind("detection").distill(s.flatten(1), t.flatten(1), DET, 2.0)
    assert float(got) == pytest.approx(sum(kl) / len(kl) + sum(sq) / len(sq), rel=1e-5)


# --- losses ---------------------------------------------------------------------------------------------------


def test_det_assignment_centre_cell_and_larger_box_wins():
    small, large = (18.0, 2.0, 22.0, 8.0, 0), (12.0, 0.0, 28.0, 10.0, 1)  # both centred at (20, 5) → row 0, col 2
    pos, box_t, labels = task_kind("detection").assign(det_payload([small, large, BOX]), DET)
    assert pos[0].nonzero().tolist() == [[0, 2], [1, 1]]
    assert labels[0, 0, 2] == 1 and labels[0, 1, 1] == 2 and (labels[0][~pos[0]] == -1).all()
    assert torch.allclose(box_t[0, :, 0, 2], torch.tensor([20 / 8 - 2, 5 / 8, 16 / 32, 10 / 32]))


def binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_det_loss_at_exact_outputs_is_the_box_target_entropy():
    # BCE(logit(p), p) = H(p): the minimum; objectness and class terms vanish with ±30 logits.
    targets = [0.125, 0.625, 10 / 32, 14 / 32]
    loss = task_kind("detection").loss(det_output([BOX]), det_payload([BOX]), DET)
    assert float(loss) == pytest.approx(sum(binary_entropy(p) for p in targets), rel=1e-4)
    worse = task_kind("detection").loss(torch.randn(1, 8 * 16), det_payload([BOX]), DET)
    assert float(worse) > float(loss) + 1


def test_det_loss_matches_hand_sum_on_random_output():
    torch.manual_seed(4)
    o = torch.randn(1, 8 * 16)
    out = o.view(8, 4, 4)
    obj = sum(bce(float(out[4, i, j]), float((i, j) == (1, 1))) for i in range(4) for j in range(4))
    box = sum(bce(float(out[c, 1, 1]), p) for c, p in enumerate([0.125, 0.625, 10 / 32, 14 / 32]))
    cls_logits = out[5:, 1, 1].tolist()
    ce = math.log(sum(math.exp(v) for v in cls_logits)) - cls_logits[2]
    assert float(task_kind("detection").loss(o, det_payload([BOX]), DET)) == pytest.approx(obj + box + ce, rel=1e-5)


def test_seg_loss_is_cross_entropy_with_ignore_index():
    torch.manual_seed(5)
    logits, mask = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    mask[0, 0] = 255
    got = task_kind("segmentation").loss(logits.flatten(1), mask.flatten(1).float(), SEG)
    assert float(got) == pytest.approx(float(F.cross_entropy(logits, mask, ignore_index=255)), rel=1e-6)
    void = torch.full_like(mask, 255).flatten(1).float()  # every pixel void: 0 with a gradient, not NaN
    out = logits.flatten(1).requires_grad_()
    loss = task_kind("segmentation").loss(out, void, SEG)
    loss.backward()
    assert float(loss) == 0.0 and torch.isfinite(out.grad).all()


# --- packing and the mixed-task criterion ---------------------------------------------------------------------


def test_pack_unpack_round_trip_per_kind():
    mask = torch.randint(0, 3, (4, 4))
    mask[1, 2] = 255
    seg = task_kind("segmentation")
    assert torch.equal(seg.unpack_target(seg.pack_target({"mask": mask}, SEG), SEG)["mask"], mask)
    cls = task_kind("classification")
    assert cls.unpack_target(cls.pack_target({"label": 4}, CLS), CLS) == {"label": 4}
    det = task_kind("detection")
    boxes, labels = torch.tensor([[1.0, 2, 5, 9], [3, 3, 30, 31]]), torch.tensor([2, 0])
    y = det.pack_target({"boxes": boxes, "labels": labels}, DET)
    assert y.shape == (det.payload_len(DET),) and y.dtype == torch.float32 and (y[13:] == -1).all()
    back = det.unpack_target(y, DET)
    assert torch.equal(back["boxes"], boxes) and torch.equal(back["labels"], labels)
    assert back["iscrowd"].tolist() == [0, 0]
    for kind, spec in SPECS.items():  # outputs: flattened head + zero padding → head
        head = torch.randn(2, *task_kind(kind).shape(spec))
        padded = torch.cat([head.flatten(1), torch.zeros(2, 7)], 1)
        assert torch.equal(task_kind(kind).unpack_output(padded, spec), head)


def test_det_pack_keeps_the_largest_boxes():
    boxes = torch.tensor([[0.0, 0, 2, 2], [0, 0, 10, 10], [0, 0, 1, 1], [0, 0, 5, 5]])
    y = task_kind("detection").pack_target({"boxes": boxes, "labels": torch.arange(4)}, DET)
    assert int(y[0]) == 3 and task_kind("detection").unpack_target(y, DET)["labels"].tolist() == [0, 1, 3]


def test_task_criterion_is_sample_weighted_mean_on_mixed_batch():
    torch.manual_seed(6)
    specs = [SEG, CLS]
    width = 1 + max(task_kind(s.kind).payload_len(s) for s in specs)
    out_len = max(task_kind(s.kind).output_len(s) for s in specs)
    task = torch.tensor([0, 1, 1, 0, 1])
    y = torch.full((5, width), -1.0)
    y[:, 0] = task.float()
    y[task == 0, 1:17] = torch.randint(0, 3, (2, 16)).float()
    y[task == 1, 1] = torch.randint(0, 6, (3,)).float()
    o = torch.randn(5, out_len)
    o[task == 1, 6:] = 0
    seg_l = task_kind("segmentation").loss(o[task == 0], y[task == 0, 1:], SEG)
    cls_l = task_kind("classification").loss(o[task == 1], y[task == 1, 1:], CLS)
    crit = TaskCriterion(specs)
    assert float(crit(o, y)) == pytest.approx(float(2 * seg_l + 3 * cls_l) / 5, rel=1e-6)
    assert float(copy.deepcopy(crit)(o, y)) == float(pickle.loads(pickle.dumps(crit))(o, y))
    with pytest.raises(ValueError, match="task id 2"):
        crit(o[:1], y[:1].clone().fill_(2))
