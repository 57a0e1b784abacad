"""Trivial references for each task's primary metric: what nearest neighbours on raw pixels score, no learning.

A single-task baseline that does not clearly beat these has barely learnt, and forgetting measured on it is mostly
noise. Each reference predicts, for every evaluation image, from its nearest training images of the same task
(Euclidean distance on the raw input tensors, as fed to the model):

    classification, binary   k-NN vote (k = 5; ties → the class with the nearer neighbour)
    segmentation             the mask of the nearest training image (1-NN; void pixels → background)
    detection                the boxes and labels of the nearest training image (1-NN), each with score 1

scored by the task's own metric code (the prediction is encoded as the packed output that decodes to it), so
reference and model are measured alike.
"""

from __future__ import annotations

import torch

from benchmark.tasks import kind_of
from benchmark.tasks.reference import Copy, Vote

K_VOTE = 5
NAMES = {Vote: f"{K_VOTE}-NN on raw pixels", Copy: "1-NN on raw pixels (its target copied)"}


def _tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*((x, torch.as_tensor(y)) for x, y, *_ in dataset), strict=True)
    return torch.stack(xs).flatten(1).float(), torch.stack(ys)


def nearest(train_x: torch.Tensor, eval_x: torch.Tensor, k: int, chunk: int = 256) -> torch.Tensor:
    """eval × k indices of the nearest training rows (ascending distance)."""
    return torch.cat([torch.cdist(eval_x[i:i + chunk], train_x).topk(k, largest=False).indices
                      for i in range(0, len(eval_x), chunk)])


def vote(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """labels: eval × k neighbour labels, nearest first → the most frequent; ties go to the nearer neighbour."""
    k = labels.shape[1]
    weight = 1 + (k - torch.arange(k, dtype=torch.get_default_dtype())) * 1e-3  # counts decide; rank only breaks ties
    scores = torch.zeros(len(labels), n_classes).scatter_add_(1, labels, weight.expand_as(labels).contiguous())
    return scores.argmax(1)


def reference_score(spec, train, evaluation) -> dict | None:
    """→ {"name", "score"} of the task's trivial reference; `train` / `evaluation`: datasets of (x, y, task).
    None for a kind whose reference is not one of these two (none, or the multi-task set's mean target)."""
    kind = kind_of(spec)
    ref = kind.reference
    if type(ref) not in NAMES:
        return None
    (tx, ty), (ex, ey) = _tensors(train), _tensors(evaluation)
    target_t, target_e = kind.target_of(ty), kind.target_of(ey)
    if isinstance(ref, Vote):
        idx = nearest(tx, ex, min(K_VOTE, len(tx)))
        predicted = ref.as_target(vote(ref.labels(target_t)[idx], spec.params.num_classes))
    else:
        predicted = target_t[nearest(tx, ex, 1)[:, 0]]
    return {"name": NAMES[type(ref)], "score": float(scored(spec, predicted, target_e)[kind.primary])}


def scored(spec, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Predicted targets scored by the kind's own metric (encoded as the output that predicts exactly them)."""
    kind = kind_of(spec)
    metric = kind.metric(spec)
    metric.update(kind.as_output(predicted, spec), target)
    return metric.compute()


def trivial_references(bench) -> dict[str, dict]:
    """task name → {"name", "score"} on the stream's evaluation split (the test split, or validation); tasks of a
    kind without a raw-pixel reference are left out."""
    refs = {spec.name: reference_score(spec, bench.scenario.train_stream[t].dataset,
                                       bench.scenario.test_stream[t].dataset)
            for t, spec in enumerate(bench.tasks)}
    return {name: ref for name, ref in refs.items() if ref is not None}

