"""Alternating: round-robin task batches — batch k trains only task k mod T (each task sees 1/T of the steps)."""

from benchmark.mtl.registries import SCHEDULES
from benchmark.mtl.schedules.stage import Stage


@SCHEDULES.register("alternating")
def build(cfg, *, epochs: int, tasks: tuple[str, ...]) -> list[Stage]:
    return [Stage(epochs, tuple(tasks), round_robin=True, eval_label="after_joint")]
