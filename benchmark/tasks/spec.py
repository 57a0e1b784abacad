"""A task as the model, the losses and the R matrix see it: a name, a kind, the kind's typed parameters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """`params`: an instance of the kind's parameter class (`KINDS` entry's `config_cls`, e.g.
    `SegmentationParams(num_classes=21, image_size=64)`), or a dict of its fields; omitted when every field has a
    default (a binary task). `about`: what the task is (source classes, grouping...), recorded for people and never
    read by code."""

    name: str  # column header in matrix.csv
    kind: str = "binary"
    params: Any = None
    about: dict = field(default_factory=dict)

    def __post_init__(self):
        from benchmark.registry import KINDS  # the registry imports the kinds, which import this module's users

        cls = KINDS.get(self.kind).config_cls
        given = self.params
        if isinstance(given, cls):
            return
        if given is not None and not isinstance(given, dict):
            raise UserError(f"task {self.name!r}: params of kind {self.kind!r} must be {cls.__name__} or a dict of "
                            f"its fields, got {type(given).__name__}")
        try:
            object.__setattr__(self, "params", cls(**(given or {})))
        except TypeError as e:
            fields = ", ".join(f.name for f in dataclasses.fields(cls))
            raise UserError(f"task {self.name!r} of kind {self.kind!r} needs params ({fields}): {e}") from None

    @property
    def n_outputs(self) -> int:
        """Width of the task's flattened head output."""
        from benchmark.tasks.kind import kind_of

        return kind_of(self).output_len(self)

    @property
    def primary(self) -> str:
        """The metric that fills R (higher is better)."""
        from benchmark.tasks.kind import kind_of

        return kind_of(self).primary
