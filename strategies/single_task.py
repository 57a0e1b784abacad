"""Single-task baselines (the dense suite document's reference point): each task trained alone, with the same budget.

Before every experience the model goes back to its initial weights (the same seeded initialisation every strategy
starts from) and the optimizer drops its state, so after experience i the model has seen task i only, for the same
epochs and batch size the other strategies give that task. Its learning-rate schedule is theirs for that task under
`--lr-schedule cosine` (restarted at every experience for every strategy); under `cosine-stream` (the dense suite
document's one cosine over the whole stream) each baseline is a training of its own with its own cosine over E
epochs, while a sequential strategy's task i gets the stream cosine's i-th part (docs/deviations.md).

R[i][i] is task i's baseline; the report divides every strategy's final score on task i by it (normalised R,
relative drop). The rest of row i is the other tasks' heads on a model not trained for them, so BWT, forgetting and
FWT are undefined for this strategy (None), and its ACC is the mean of the baselines, mean_i R[i][i].
"""

from __future__ import annotations

import copy

from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from benchmark.registry import STRATEGIES
from benchmark.runtime.state import Stateful


class RestartEachExperience(Stateful, SupervisedPlugin):
    state_attrs = ("initial", "restarts")

    def __init__(self):
        super().__init__()
        self.initial = None
        self.restarts = 0

    def before_training_exp(self, strategy, **kwargs):
        if self.initial is None:
            self.initial = copy.deepcopy(strategy.model.state_dict())
            return
        strategy.model.load_state_dict(self.initial)  # in place: the optimizer keeps the same parameters
        strategy.optimizer.state.clear()
        self.restarts += 1


@STRATEGIES.register("single_task", baseline=True, restarts_each_experience=True, trains_past_heads=True,
                     scenarios=("task-il",))
def build_single_task(cfg=None, plugins=(), **template_kwargs) -> SupervisedTemplate:
    return SupervisedTemplate(plugins=[*plugins, RestartEachExperience()], **template_kwargs)
