"""Binary classification with one logit z per sample (the Hat Swap notebooks' `Linear(768, 1)` + sigmoid head):

    p = σ(z) = P(positive)          loss = BCE(p, y) = −y·log σ(z) − (1 − y)·log(1 − σ(z))   (batch mean)
    prediction = [p > 0.5] = [z > 0]  (the notebooks' threshold 0.5)        accuracy = mean(prediction = y)

One logit is the 2-way softmax with its first logit fixed at 0: softmax([0, z]) = [1 − σ(z), σ(z)]. LwF's term uses
exactly that: the binary KL of the tempered Bernoullis,

    T² · KL( Bern(σ(z_t/T)) ‖ Bern(σ(z_s/T)) ) = T² · [ q·log(q/p) + (1 − q)·log((1 − q)/(1 − p)) ],
    q = σ(z_t/T), p = σ(z_s/T),

computed as `kd_loss([0, z_s], [0, z_t], T)` (batch mean), so at T = 1 it is the 2-logit KL of the same
probabilities. Targets are the stream's class labels 0 / 1 (long), as for kind `binary`; the trivial reference
votes over them as for `binary`. Pick it on the binary stream with `--binary_tasks.head sigmoid`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import KINDS
from benchmark.tasks.distill import kd_loss
from benchmark.tasks.kind import CERTAIN, LabelKind
from benchmark.tasks.kinds.binary import BinaryParams


def as_two_logits(z: torch.Tensor) -> torch.Tensor:
    """B × 1 logits z → B × 2 logits [0, z], whose softmax is [1 − σ(z), σ(z)]."""
    z = z[:, :1]
    return torch.cat([torch.zeros_like(z), z], dim=1)


class LogitAccuracy:
    """mean([z > 0] = y) over every batch of a split: σ(z) > 0.5 ⇔ z > 0."""

    def __init__(self):
        self.correct = self.seen = 0

    def update(self, o: torch.Tensor, y: torch.Tensor) -> None:
        self.correct += int(((o[:, 0] > 0).long() == y.long()).sum())
        self.seen += len(y)

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct / max(self.seen, 1)}


@KINDS.register("binary_sigmoid", config_cls=BinaryParams)
class BinarySigmoid(LabelKind):
    def shape(self, spec):
        return (1,)

    def make_head(self, spec, width: int) -> nn.Module:
        return nn.Linear(width, 1)

    def loss(self, o, y, spec):
        return F.binary_cross_entropy_with_logits(o[:, 0], y.to(o.dtype))

    def distill(self, student, teacher, spec, temperature: float):
        return kd_loss(as_two_logits(student), as_two_logits(teacher), temperature)

    def metric(self, spec):
        return LogitAccuracy()

    def predict(self, o, spec):
        return (o[:, 0] > 0).long()

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """A certain logit per label: +CERTAIN for 1, −CERTAIN for 0."""
        return (CERTAIN * (2 * y.float() - 1)).reshape(-1, 1)
