"""Multi-label classification: L independent yes/no labels per image (which object classes a scene holds).

    head    global average pooling, linear → L logits z (a B×D vector is read as is)
    target  payload [y_1..y_L], y_l ∈ {0, 1}  (multi-hot)
    loss    BCE with logits, mean over B×L: −[y·log σ(z) + (1 − y)·log(1 − σ(z))]   (torch's)
    LwF     Σ_l T²·KL(Bern(σ(z_t,l/T)) ‖ Bern(σ(z_s,l/T))), batch mean: each label is a binary task, distilled as
            kind binary_sigmoid distils its one logit (the 2-logit KL of [0, z]), and LwF sums the term over the
            labels of a multi-label task (Li & Hoiem 2016, sec. 3). Its gradient equals that of the BCE between the
            student's σ(z_s/T) and the teacher's softened σ(z_t/T) (they differ by the teacher's entropy), and it is
            0 for identical outputs.
    predict [σ(z) > 0.5] = [z > 0], per label
    metric  over the whole evaluation split (scores accumulated, never per-batch means):
            map       primary: mean over labels of average precision, sklearn's definition
                      AP = Σ_n (R_n − R_{n−1}) P_n over the distinct scores in decreasing order (no interpolation);
                      a label with no positive in the split has no AP and is left out of the mean (NaN if none has)
            f1_micro  2·TP / (2·TP + FP + FN), counts summed over all labels, at σ(z) > 0.5
            f1_macro  mean over labels of the per-label F1 at σ(z) > 0.5, over the labels where it is defined (a
                      positive or a predicted positive): sklearn's f1_score(average="macro", zero_division=nan)

The targets are packed rows (benchmark/tasks/packed.py): a multi-hot vector is not a class label, and a stream that
mixes it with masks or boxes carries one tensor per batch. The trivial reference is PackedKind's: the nearest
training image's tags, copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import KINDS
from benchmark.tasks.distill import kl_t2
from benchmark.tasks.kind import CERTAIN
from benchmark.tasks.packed import PackedKind


@dataclass(frozen=True)
class MultilabelParams:
    num_labels: int  # L

    def __post_init__(self):
        if self.num_labels < 1:
            raise TypeError(f"num_labels must be ≥ 1, got {self.num_labels}")


class TagHead(nn.Module):
    """B×C×h×w map → global average pooling → linear → B×L logits (a B×C vector skips the pooling)."""

    def __init__(self, channels: int, n_labels: int):
        super().__init__()
        self.fc = nn.Linear(channels, n_labels)

    def forward(self, f):
        return self.fc(f.mean(dim=(2, 3)) if f.dim() == 4 else f)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """sklearn's average_precision_score for one label: Σ_n (R_n − R_{n−1}) P_n, one step per distinct score
    (tied scores enter together), scores in decreasing order; NaN when there is no positive."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last]
    precision, recall = tp / (last + 1), tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """N×L logits and N×L {0, 1} targets → {"map", "f1_micro", "f1_macro"} (see the module docstring)."""
    positive = targets > 0.5
    aps = [average_precision(logits[:, j], positive[:, j]) for j in range(targets.shape[1])]
    predicted = logits > 0
    tp = (predicted & positive).sum(0)
    fp, fn = (predicted & ~positive).sum(0), (~predicted & positive).sum(0)
    denom = 2 * tp + fp + fn
    defined = denom > 0
    f1_micro = 2 * tp.sum() / denom.sum() if denom.sum() else float("nan")
    f1_macro = float(np.mean(2 * tp[defined] / denom[defined])) if defined.any() else float("nan")
    present = [a for a in aps if not np.isnan(a)]
    return {"map": float(np.mean(present)) if present else float("nan"), "f1_micro": float(f1_micro),
            "f1_macro": f1_macro}


@KINDS.register("multilabel", config_cls=MultilabelParams)
class Multilabel(PackedKind):
    primary = "map"

    def make_head(self, spec, width: int) -> nn.Module:
        return TagHead(width, spec.params.num_labels)

    def shape(self, spec):
        return (spec.params.num_labels,)

    def payload_len(self, spec) -> int:
        return spec.params.num_labels

    def pack_target(self, target: dict, spec) -> torch.Tensor:
        tags = torch.as_tensor(target["tags"]).float().flatten()
        if len(tags) != spec.params.num_labels:
            raise ValueError(f"{spec.name}: {len(tags)} tags, expected {spec.params.num_labels}")
        return tags

    def unpack_target(self, y: torch.Tensor, spec) -> dict:
        return {"tags": y[: spec.params.num_labels].long()}

    def tags(self, y: torch.Tensor, spec) -> torch.Tensor:
        """Payload rows → B×L multi-hot targets (the padding past L dropped)."""
        return y[:, : spec.params.num_labels]

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """Payload rows → a certain logit per label: +CERTAIN for 1, −CERTAIN for 0."""
        return CERTAIN * (2 * self.tags(y, spec).float() - 1)

    def loss(self, o, y, spec):
        return F.binary_cross_entropy_with_logits(self.unpack_output(o, spec), self.tags(y, spec).to(o.dtype))

    def distill(self, student, teacher, spec, temperature: float):
        """Σ over labels of binary_sigmoid's term (the 2-logit KL of [0, z] per label), batch mean."""
        zs, zt = self.unpack_output(student, spec), self.unpack_output(teacher, spec)
        per_label = kl_t2(_two_logits(zs), _two_logits(zt), temperature, dim=-1)  # B × L
        return per_label.sum(1).mean()

    def metric(self, spec):
        return _MultilabelMetric(self, spec)

    def predict(self, o, spec):
        return (self.unpack_output(o, spec) > 0).long()


def _two_logits(z: torch.Tensor) -> torch.Tensor:
    """B×L logits → B×L×2 logits [0, z], whose softmax is [1 − σ(z), σ(z)]."""
    return torch.stack([torch.zeros_like(z), z], dim=-1)


class _MultilabelMetric:
    """Keeps every logit and target of the split; computes the scores over all of them at once."""

    def __init__(self, kind: Multilabel, spec):
        self.kind, self.spec = kind, spec
        self.reset()

    def update(self, o, y):
        self.logits.append(self.kind.unpack_output(o, self.spec).detach().float().cpu())
        self.targets.append(self.kind.tags(y, self.spec).detach().float().cpu())

    def compute(self) -> dict:
        if not self.logits:
            return {"map": float("nan"), "f1_micro": float("nan"), "f1_macro": float("nan")}
        return multilabel_scores(torch.cat(self.logits).numpy(), torch.cat(self.targets).numpy())

    def reset(self):
        self.logits, self.targets = [], []
