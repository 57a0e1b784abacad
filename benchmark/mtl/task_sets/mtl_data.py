"""What a task set returns: images and every task's targets per split, plus the TaskSpecs."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from benchmark.errors import UserError
from benchmark.mtl.references import trivial_references
from benchmark.tasks import TaskSpec


@dataclass
class MTLData:
    tasks: list[TaskSpec]
    x: dict[str, torch.Tensor]  # split (train | val | test) → B×C×H×W images, normalised to [-1, 1]
    y: dict[str, dict[str, torch.Tensor]]  # split → task → targets (reconstruction: the images themselves)
    provenance: dict = field(default_factory=dict)

    @cached_property  # task sets are cached per config, so the 1-NN search runs once per data, not once per run
    def references(self) -> dict:
        """{'primary': {task: primary metric}, split: trivial references} for every split but train."""
        return {"primary": {t.name: t.primary for t in self.tasks}} | {
            split: trivial_references(self, split) for split in self.x if split != "train" and len(self.x[split])}

    def select(self, spec: str) -> list[TaskSpec]:
        """'3' = the first 3 tasks; 'classes,random' = those tasks by name, in that order."""
        names = [t.name for t in self.tasks]
        return [self.tasks[names.index(n)] for n in select_names(names, spec)]


def select_names(names: list[str], spec: str) -> list[str]:
    """`--tasks` resolved against a task set's task names (no data needed: the batch plans baselines with it)."""
    text = str(spec).strip()
    if text.isdigit():
        n = int(text)
        if not 1 <= n <= len(names):
            raise UserError(f"--tasks {n}: this task set has {len(names)} tasks ({', '.join(names)})")
        return list(names[:n])
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    if unknown := [c for c in chosen if c not in names]:
        raise UserError(f"unknown task(s) {unknown} in --tasks; known: {', '.join(names)} (or a count)")
    if len(set(chosen)) != len(chosen) or not chosen:
        raise UserError(f"--tasks needs distinct task names, got {text!r}")
    return chosen
