"""What a schedule produces: a list of training stages, run in order by the trainer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    epochs: int
    tasks: tuple[str, ...]  # tasks whose losses are trained in this stage
    round_robin: bool = False  # True: each batch trains one task, cycling through `tasks`; False: all together
    eval_label: str | None = None  # evaluate every task after this stage → one row of R with this label
