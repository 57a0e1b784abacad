"""Joint training (seed 000): one training run on every task's data merged; each sample keeps its task label and
is routed to its own head, so the gradients of all heads reach the shared layers together. Not continual: R has a
single row, and BWT / forgetting / FWT are undefined (N/A, not 0)."""

from avalanche.training.supervised import JointTraining

from benchmark.registry import STRATEGIES


@STRATEGIES.register("joint", one_shot=True)
def build_joint(cfg=None, plugins=(), **template_kwargs) -> JointTraining:
    return JointTraining(plugins=list(plugins), **template_kwargs)
