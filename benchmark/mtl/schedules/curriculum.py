"""Curriculum: tasks join one by one at given epochs and then train jointly (the multi-task toolkit document's
{0: [t1], 10: [t1, t2], 20: [t1, t2, t3]} is `--curriculum.starts 0,10,20` with 30 epochs).

starts[k] = the epoch at which task k (in task order) joins; () = evenly spaced, starts[k] = round(k·E/T).
One evaluation at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import UserError
from benchmark.mtl.registries import SCHEDULES
from benchmark.mtl.schedules.stage import Stage


@dataclass(frozen=True)
class CurriculumConfig:
    starts: tuple[int, ...] = ()


def task_starts(starts, epochs: int, n_tasks: int) -> list[int]:
    starts = list(starts) or [round(k * epochs / n_tasks) for k in range(n_tasks)]
    if len(starts) != n_tasks or starts[0] != 0 or any(b < a for a, b in zip(starts, starts[1:], strict=False)):
        raise UserError(f"--curriculum.starts needs {n_tasks} non-decreasing epochs starting at 0, got {starts}")
    if starts[-1] >= epochs:
        raise UserError(f"--curriculum.starts {starts}: the last task joins at epoch {starts[-1]} but there are only "
                        f"{epochs} epochs; raise --epochs or lower the starts")
    return starts


@SCHEDULES.register("curriculum", config_cls=CurriculumConfig)
def build(cfg: CurriculumConfig, *, epochs: int, tasks: tuple[str, ...]) -> list[Stage]:
    starts = task_starts((cfg or CurriculumConfig()).starts, epochs, len(tasks))
    ends = [*starts[1:], epochs]
    stages = [Stage(e - s, tuple(tasks[:k + 1])) for k, (s, e) in enumerate(zip(starts, ends, strict=True)) if e > s]
    return [*stages[:-1], Stage(stages[-1].epochs, stages[-1].tasks, eval_label="after_joint")]
