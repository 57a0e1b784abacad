"""Sequential: the continual stream — task 0 alone for `epochs`, then task 1 alone, ...; every task is evaluated
after each, giving the T×T matrix R and ACC / BWT / forgetting / FWT (`benchmark.outputs.metrics.cl_metrics`)."""

from benchmark.mtl.registries import SCHEDULES
from benchmark.mtl.schedules.stage import Stage


@SCHEDULES.register("sequential", continual=True)
def build(cfg, *, epochs: int, tasks: tuple[str, ...]) -> list[Stage]:
    return [Stage(epochs, (t,), eval_label=f"after_exp{k}") for k, t in enumerate(tasks)]
