"""Joint: every batch trains every task's loss together, for all epochs; one evaluation at the end (R has 1 row)."""

from benchmark.mtl.registries import SCHEDULES
from benchmark.mtl.schedules.stage import Stage


@SCHEDULES.register("joint")
def build(cfg, *, epochs: int, tasks: tuple[str, ...]) -> list[Stage]:
    return [Stage(epochs, tuple(tasks), eval_label="after_joint")]
