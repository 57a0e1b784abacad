"""The task-kind contract (benchmark/tasks/kind.py), checked over every registered kind at test size: the head gives
the declared number of outputs, the loss is finite on random targets, the output that predicts the targets exactly
scores its primary metric at its best, and the distillation term of an output against itself is 0. A new kind needs
only its case in `CASES`."""

from __future__ import annotations

import pytest
import torch

from benchmark.registry import KINDS
from benchmark.tasks import TaskSpec, task_kind

B, WIDTH, MAP_SIDE = 6, 8, 4


def label_targets(kind, spec, gen):
    """Class labels as the kind's targets (its declared k-NN reference, a `Vote`, maps labels to targets)."""
    return kind.reference.as_target(torch.randint(0, spec.params.num_classes, (B,), generator=gen))


def seg_targets(kind, spec, gen):
    s, p = spec.params.image_size, spec.params
    masks = torch.randint(0, p.num_classes, (B, s, s), generator=gen)
    masks[:, 0, 0] = p.ignore_index  # void pixels count in neither the loss nor the score
    return torch.stack([kind.pack_target({"mask": m}, spec) for m in masks])


def det_targets(kind, spec, gen):
    """Up to max_boxes boxes per image, each centred in its own grid cell (one object per cell, as `assign` does)."""
    p = spec.params
    stride, rows = p.image_size / p.grid, []
    for _ in range(B):
        cells = torch.randperm(p.grid * p.grid, generator=gen)[: int(torch.randint(1, p.max_boxes + 1, (1,),
                                                                                    generator=gen))]
        centres = torch.stack([cells % p.grid, cells // p.grid], 1).float() * stride + stride / 2
        half = stride * (0.3 + 0.5 * torch.rand(len(cells), 2, generator=gen))
        boxes = torch.cat([centres - half, centres + half], 1).clamp(0, p.image_size)
        labels = torch.randint(0, p.num_classes, (len(cells),), generator=gen)
        rows.append(kind.pack_target({"boxes": boxes, "labels": labels}, spec))
    return torch.stack(rows)


def tag_targets(kind, spec, gen):
    """Multi-hot rows, every label positive in one sample and negative in another (each label has an AP)."""
    tags = torch.randint(0, 2, (B, spec.params.num_labels), generator=gen)
    tags[0], tags[1] = 1, 0
    return torch.stack([kind.pack_target({"tags": t}, spec) for t in tags])


def image_targets(kind, spec, gen):
    return torch.rand(B, *spec.params.shape, generator=gen) * 2 - 1


# kind → (its params at test size, random targets as `target_of` gives them)
CASES = {
    "binary": ({}, label_targets),
    "binary_sigmoid": ({}, label_targets),
    "multiclass": ({"num_classes": 5}, label_targets),
    "classification": ({"num_classes": 6}, label_targets),
    "segmentation": ({"num_classes": 3, "image_size": 8}, seg_targets),
    "detection": ({"num_classes": 3, "image_size": 32, "grid": 4, "max_boxes": 3}, det_targets),
    "multilabel": ({"num_labels": 4}, tag_targets),
    "reconstruction": ({"shape": (1, 4, 4), "mse_of_mean_image": 0.5}, image_targets),
}
NAMES = KINDS.names()


def case(name: str):
    """→ (kind, spec, random targets, one raw head output per sample: B × n_outputs)."""
    assert name in CASES, f"task kind {name!r} needs a test-sized case in CASES"
    params, targets = CASES[name]
    kind, spec, gen = task_kind(name), TaskSpec(f"t_{name}", kind=name, params=params), torch.Generator()
    gen.manual_seed(0)
    torch.manual_seed(0)
    head = kind.make_head(spec, WIDTH)
    feats = torch.randn(B, WIDTH) if kind.reads == "vector" else torch.randn(B, WIDTH, MAP_SIDE, MAP_SIDE)
    with torch.no_grad():
        out = head(feats).flatten(1)
    return kind, spec, targets(kind, spec, gen), out


@pytest.mark.parametrize("name", NAMES)
def test_the_head_gives_the_declared_outputs_and_the_loss_is_finite(name):
    kind, spec, y, out = case(name)
    assert out.shape == (B, spec.n_outputs) and spec.n_outputs == kind.output_len(spec)
    assert kind.unpack_output(out, spec).shape == (B, *kind.shape(spec))
    loss = kind.loss(out, y, spec)
    assert loss.dim() == 0 and torch.isfinite(loss) and float(loss) > 0


def perfect_output(kind, y, spec) -> torch.Tensor:
    """The output that predicts `y` exactly: the kind's `as_output`, or, for a kind whose output is its target
    (reconstruction), the target itself."""
    try:
        return kind.as_output(y, spec)
    except NotImplementedError:
        return y.flatten(1)


@pytest.mark.parametrize("name", NAMES)
def test_a_perfect_prediction_scores_the_primary_metric_at_its_best(name):
    kind, spec, y, out = case(name)
    perfect = perfect_output(kind, y, spec)
    assert perfect.shape == (B, spec.n_outputs)
    best, random = kind.metric(spec), kind.metric(spec)
    best.update(perfect, y)
    random.update(out, y)
    scores = best.compute()
    assert kind.primary in scores and scores[kind.primary] == pytest.approx(1.0)
    assert random.compute()[kind.primary] < 1.0  # the check can fail: an untrained head is not perfect


@pytest.mark.parametrize("name", NAMES)
def test_distilling_an_output_to_itself_costs_nothing(name):
    kind, spec, _, out = case(name)
    assert float(kind.distill(out, out.clone(), spec, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kind.distill(out, out + torch.randn_like(out), spec, 2.0)) > 1e-4
