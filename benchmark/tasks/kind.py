"""The interface every task kind implements (benchmark/tasks/kinds/<name>.py), and the lookup by spec."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from benchmark.tasks.distill import kd_loss
from benchmark.tasks.reference import TrivialReference, Vote

CERTAIN = 20.0  # a logit that reads as certainty (σ(20) = 1 − 2e-9): encodes a known answer as an output


class TaskKind:
    """One kind of task. Class attributes declare what the harness needs to know without asking the name:

    primary   the metric that fills R (higher is better)
    reads     what the head reads: "vector" (B×D features) or "map" (B×C×h×w feature maps)
    packed    targets are packed float rows [task id, payload...] (benchmark/tasks/packed.py) rather than class
              labels: needed when a batch mixes tasks whose targets differ in shape (Avalanche collates one tensor)
    pad       value of the columns past a task's own width in the model's routed B × max-width output
    transfer  (metric, lower is better) that multi-task transfer gain and Δm compare (benchmark/mtl/transfer.py)
    reference the trivial reference on raw pixels, an optional capability (benchmark/tasks/reference.py: Vote,
              Copy, MeanTarget, each with what it needs); None: the kind has none and implements nothing for it

    Methods take the task's spec (its `params` is this kind's parameter dataclass).
    """

    primary: str = "accuracy"
    reads: str = "vector"
    packed: bool = False
    pad: float = 0.0
    reference: TrivialReference | None = None

    @property
    def transfer(self) -> tuple[str, bool]:
        return self.primary, False

    def shape(self, spec) -> tuple[int, ...]:
        """One sample's head output shape."""
        raise NotImplementedError

    def output_len(self, spec) -> int:
        return math.prod(self.shape(spec))

    def unpack_output(self, o: torch.Tensor, spec) -> torch.Tensor:
        """B × (≥ output_len) flattened outputs → B × shape(spec): the one output convention. Every model gives a
        kind flattened outputs (a head's, or a routed row padded past the task's width), and every method here
        (loss, distill, metric, predict) reads them so; the multi-task toolkit's `model(x)` shows this shape."""
        return o[:, : self.output_len(spec)].reshape(o.shape[0], *self.shape(spec))

    def make_head(self, spec, width: int) -> nn.Module:
        """The task's output layer on `width` features (channels for a map)."""
        raise NotImplementedError

    def loss(self, o: torch.Tensor, y: torch.Tensor, spec) -> torch.Tensor:
        raise NotImplementedError

    def distill(self, student: torch.Tensor, teacher: torch.Tensor, spec, temperature: float) -> torch.Tensor:
        """LwF's term for this task: student and teacher outputs (flattened head outputs) of the same inputs."""
        raise NotImplementedError

    def metric(self, spec):
        """A fresh accumulator: `update(output, target)` per batch, `compute()` → {metric name: value}, the primary
        among them. The target is what `target_of` gives."""
        raise NotImplementedError

    def target_of(self, y: torch.Tensor) -> torch.Tensor:
        """A batch's targets as the stream yields them → what `loss` and the metric read."""
        return y

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """Targets → the output that predicts exactly them (scored by the kind's own metric)."""
        raise NotImplementedError(f"{type(self).__name__} implements no as_output")

    def predict(self, o: torch.Tensor, spec) -> torch.Tensor:
        """A flattened output → the prediction `MultiTaskModel.predict` returns."""
        return o


class LabelKind(TaskKind):
    """A class label per sample, logits out, cross-entropy, accuracy; pads routed rows with -inf so that softmax,
    cross-entropy and argmax over a padded row equal those over the task's own logits (Avalanche's
    MultiTaskModule pads with 0, which silently changes all three when heads differ in width)."""

    pad = float("-inf")
    reference = Vote()  # targets are the class labels

    def shape(self, spec):
        return (spec.params.num_classes,)

    def make_head(self, spec, width: int) -> nn.Module:
        return nn.Linear(width, self.output_len(spec))

    def loss(self, o, y, spec):
        return torch.nn.functional.cross_entropy(o, y)

    def distill(self, student, teacher, spec, temperature: float):
        """T²·KL on the task's logits, batch mean (benchmark.tasks.distill.kd_loss)."""
        return kd_loss(student, teacher, temperature)

    def metric(self, spec):
        return Accuracy()

    def predict(self, o, spec):
        return o.argmax(dim=-1)

    def as_output(self, y: torch.Tensor, spec) -> torch.Tensor:
        """One-hot logits."""
        return CERTAIN * torch.nn.functional.one_hot(y.long(), spec.params.num_classes).float()


class Accuracy:
    """mean(argmax of the logits = label), counted over every batch of a split (padded rows: argmax ignores -inf)."""

    def __init__(self):
        self.correct = self.seen = 0

    def update(self, o: torch.Tensor, y: torch.Tensor) -> None:
        self.correct += int((o.argmax(dim=-1) == y).sum())
        self.seen += len(y)

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct / max(self.seen, 1)}


@functools.cache
def task_kind(name: str) -> TaskKind:
    """The registered kind `name` (an instance; kinds hold no state)."""
    from benchmark.registry import KINDS

    return KINDS.get(name).build()


def kind_of(spec) -> TaskKind:
    return task_kind(spec.kind)
