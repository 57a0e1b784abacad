"""Scenarios: what the model is told about a stream's tasks (van de Ven & Tolias 2019's scenarios; `--scenario`).

task-il   one head per task, the task label given at training and at test time (every stream; the default).
class-il  one head over every class of the stream, no task label: every experience carries task label 0 and its
          classes are numbered after the earlier experiences' (experience t's local class c → Σ_{s<t} k_s + c).
          The head is Mammoth's: all the stream's classes have logits from the start and a class is a target only
          from its experience on. R[i][j] (matrix.csv) = accuracy on task j's test set of the argmax over the classes
          seen so far (the experiences trained: 0..i; joint training: all; before training: all). From the same
          logits the run also gives the task-IL R (matrix_task_il.csv, summary.json's `task_il`): the argmax over
          task j's own classes, Mammoth's `mask_classes`. Streams whose tasks are class labels only
          (`binary_tasks`: 2 classes a task, `split_classes`); a strategy that needs the task label at test time
          (progressive) or one model per task (single_task) declares `scenarios=("task-il",)`.
domain-il one head of k outputs shared by every task, no task label: every experience carries task label 0 and
          keeps its labels (each task is the same k-way problem in another domain: the `permuted` and `rotated`
          streams; also Split streams, "which of the task's classes", as van de Ven & Tolias). R[i][j] = task j's
          accuracy with that head. Every task must have the same number of classes.

Strategies see the scenario as `strategy.scenario` (set by the harness): in class-IL LwF distils the logits of the
classes of past experiences; in class- and domain-IL replay balances its memory over experiences, not task labels.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from benchmark.errors import UserError
from benchmark.harness.feature_cache import CachedFeatures
from benchmark.registry import DEFAULT_MODEL
from benchmark.streams.task_stream import Benchmark, task_stream
from benchmark.tasks import TaskSpec

SCENARIOS = ("task-il", "class-il", "domain-il")
LABEL_KINDS = ("binary", "multiclass")  # kinds whose targets are class labels and whose head is k logits


def class_counts(tasks: list[TaskSpec], stream: str, scenario: str = "class-il") -> list[int]:
    """Each task's number of classes, where every task is a class-label task (class- and domain-IL need that)."""
    if bad := sorted({t.kind for t in tasks} - set(LABEL_KINDS)):
        raise UserError(f"--scenario {scenario} needs tasks whose targets are class labels ({', '.join(LABEL_KINDS)}); "
                        f"stream {stream} has {', '.join(bad)}: use --scenario task-il")
    return [t.n_outputs for t in tasks]


def stream_label(stream: str, scenario: str, architecture: str = DEFAULT_MODEL) -> str:
    """The name a run's folder, tables and summary give the stream: its own for task-IL, else `<stream>-<scenario>`;
    `@<architecture>` after it on another model than the Hat Swap network (`--architecture`), so the architectures of
    one stream never share a folder, and each is a table of its own."""
    label = stream if scenario == "task-il" else f"{stream}-{scenario}"
    return label if architecture == DEFAULT_MODEL else f"{label}@{architecture}"


def model_tasks(scenario: str, tasks: list[TaskSpec], stream: str) -> list[TaskSpec]:
    """What the model builds heads for: the stream's tasks (task-IL) or one head over all their classes."""
    if scenario == "task-il":
        return list(tasks)
    counts = class_counts(tasks, stream, scenario)
    if scenario == "domain-il" and len(set(counts)) > 1:
        raise UserError(f"--scenario domain-il shares one head between tasks of equal classes; stream {stream}'s "
                        f"tasks have {counts}: use --scenario task-il or class-il")
    width = sum(counts) if scenario == "class-il" else counts[0]
    return [TaskSpec(name="all_classes" if scenario == "class-il" else "shared", kind="multiclass",
                     params={"num_classes": width}, about={"scenario": scenario, "tasks": [t.name for t in tasks]})]


def class_ranges(counts: list[int]) -> list[list[int]]:
    """Experience t's classes in the one head: the Σ_{s<t} k_s … + k_t − 1."""
    starts = [sum(counts[:t]) for t in range(len(counts))]
    return [list(range(start, start + k)) for start, k in zip(starts, counts, strict=True)]


def _relabelled(ds, targets: list[int], offset: int):
    """The same samples (no copy of the images or features) with every label + offset."""
    shifted = [y + offset for y in targets]
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return TensorDataset(ds.tensors[0], ds.tensors[1] + offset), shifted
    if isinstance(ds, CachedFeatures):
        return CachedFeatures(ds.feats, shifted), shifted
    raise TypeError(f"cannot relabel a {type(ds).__name__} for class-IL")


def apply_scenario(scenario: str, bench: Benchmark, stream: str) -> Benchmark:
    """The stream as the scenario presents it: unchanged for task-IL; for class-IL, every experience's labels moved
    to its classes in the one head, task label 0, `columns` = the stream's tasks and `class_ranges` recorded; for
    domain-IL, task label 0 and the labels unchanged (one shared head)."""
    if scenario == "task-il":
        return bench
    heads = model_tasks(scenario, bench.tasks, stream)  # checks the stream fits the scenario
    if bench.sets is None:
        raise UserError(f"--scenario {scenario}: stream {stream} returns a Benchmark without its datasets; build it "
                        f"with Benchmark.of(train_sets, test_sets, tasks, frames, provenance)")
    ranges = class_ranges(class_counts(bench.tasks, stream, scenario)) if scenario == "class-il" else None
    offsets = [r[0] for r in ranges] if ranges else [0] * len(bench.tasks)  # domain-IL: the labels as they are
    sets = {split: [_relabelled(ds, targets, k) for (ds, targets), k in zip(bench.sets[split], offsets, strict=True)]
            for split in ("train", "test")}
    zeros = [0] * len(offsets)
    return Benchmark(task_stream(sets["train"], sets["test"], task_labels=zeros), heads, bench.frames,
                     bench.provenance, sets=sets, columns=list(bench.tasks), class_ranges=ranges)


class ClassILAccuracy:
    """One experience's test set in a class-IL run: `accuracy` = argmax over the classes seen so far equals the
    label; `task_il_accuracy` = argmax over the experience's own classes equals it (Mammoth's mask_classes)."""

    def __init__(self, own: list[int], seen: list[int]):
        self.own, self.seen = own, torch.tensor(seen)
        self.correct = self.correct_task = self.n = 0

    def update(self, logits, y) -> None:
        self.seen = self.seen.to(logits.device)  # moved once; a no-op afterwards
        seen = logits[:, self.seen].argmax(dim=-1)
        own = logits[:, self.own].argmax(dim=-1)
        self.correct += int((self.seen[seen] == y).sum())
        self.correct_task += int((own + self.own[0] == y).sum())
        self.n += len(y)

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct / max(self.n, 1), "task_il_accuracy": self.correct_task / max(self.n, 1)}
