"""What a task set returns: images and every task's targets per split, plus the TaskSpecs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from benchmark.errors import UserError
from benchmark.streams.task_stream import TaskSpec


@dataclass
class MTLData:
    tasks: list[TaskSpec]
    x: dict[str, torch.Tensor]  # split (train | val | test) → B×C×H×W images, normalised to [-1, 1]
    y: dict[str, dict[str, torch.Tensor]]  # split → task → targets (reconstruction: the images themselves)
    provenance: dict = field(default_factory=dict)

    def select(self, spec: str) -> list[TaskSpec]:
        """'3' = the first 3 tasks; 'classes,random' = those tasks by name, in that order."""
        names = [t.name for t in self.tasks]
        text = str(spec).strip()
        if text.isdigit():
            n = int(text)
            if not 1 <= n <= len(names):
                raise UserError(f"--tasks {n}: this task set has {len(names)} tasks ({', '.join(names)})")
            return self.tasks[:n]
        chosen = [s.strip() for s in text.split(",") if s.strip()]
        if unknown := [c for c in chosen if c not in names]:
            raise UserError(f"unknown task(s) {unknown} in --tasks; known: {', '.join(names)} (or a count)")
        if len(set(chosen)) != len(chosen) or not chosen:
            raise UserError(f"--tasks needs distinct task names, got {text!r}")
        return [self.tasks[names.index(c)] for c in chosen]
