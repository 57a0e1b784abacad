"""Trivial references of a task set, computed from its data (no training): what a single-task baseline must clearly
beat before its numbers mean anything.

- "1-NN on raw pixels": each classification task predicts the label of the nearest training image, Euclidean
  distance on the flattened inputs as loaded (images normalised to [−1, 1]: an affine map of the raw pixels, so the
  same neighbours). Train N×F, evaluated M×F → M labels. A dense kind (segmentation, detection) copies that
  training image's target (its mask, its boxes with score 1).
- "majority class / mean training image": classification → the most frequent training label (chance level for a
  balanced task); reconstruction → the mean training target, whose MSE is MSE_mean, so recon_score = 0 on the test
  split by definition (MSE_mean is measured there).

Each prediction is scored by the task kind's own metric (encoded as the output that predicts exactly it, `as_output`)
→ {reference: {task: {metric: value}}} with the metric names of the task kinds' metrics (accuracy; top1, top5; miou;
map_50, map, map_75; mse, recon_score, psnr).
"""

from __future__ import annotations

import torch

from benchmark.outputs.references import nearest, scored
from benchmark.tasks import kind_of
from benchmark.tasks.reference import Copy, MeanTarget, Vote

NEAREST = "1-NN on raw pixels"
CONSTANT = "majority class / mean training image"


def nearest_neighbour(x_train: torch.Tensor, x_eval: torch.Tensor) -> torch.Tensor:
    """Index into x_train of each x_eval row's nearest neighbour (Euclidean, on the flattened inputs)."""
    return nearest(x_train.flatten(1).float(), x_eval.flatten(1).float(), k=1)[:, 0]


def trivial_references(data, split: str) -> dict[str, dict[str, dict[str, float]]]:
    x_train, y_train = data.x["train"], data.y["train"]
    x_eval, y_eval = data.x[split], data.y[split]
    kinds = {s.name: kind_of(s) for s in data.tasks}
    nn_idx = nearest_neighbour(x_train, x_eval) if any(isinstance(k.reference, Vote | Copy)
                                                       for k in kinds.values()) else None
    refs = {NEAREST: {}, CONSTANT: {}}
    for spec in data.tasks:
        target, train_target = y_eval[spec.name], y_train[spec.name]
        ref = kinds[spec.name].reference
        if isinstance(ref, Vote):
            train_labels = ref.labels(train_target)  # a packed kind's payload rows → class labels
            majority = ref.as_target(torch.bincount(train_labels).argmax().expand(len(target)))
            refs[NEAREST][spec.name] = scored(spec, ref.as_target(train_labels[nn_idx]), target)
            refs[CONSTANT][spec.name] = scored(spec, majority, target)
        elif isinstance(ref, Copy):
            refs[NEAREST][spec.name] = scored(spec, train_target[nn_idx], target)
        elif isinstance(ref, MeanTarget):
            mse = float((target.double() - train_target.double().mean(dim=0, keepdim=True)).pow(2).mean())
            loss = mse * len(target) / max(len(target), 1)  # as a split's sum of per-sample losses ÷ its size
            refs[CONSTANT][spec.name] = {"loss": loss} | ref.scores_of_mse(loss, spec)
    return {name: per_task for name, per_task in refs.items() if per_task}
