"""LwF-style knowledge distillation (Li & Hoiem 2016; T = 2, λ = 1 as in the dense suite document).

While training experience k, every old task's head h < k is distilled on the current inputs against a frozen copy
of the model taken before experience k:

    loss = CE(own head) + λ · Σ_{h<k}  T² · KL( softmax(z_t,h / T) ‖ softmax(z_s,h / T) )

A sum over the old heads, λ per head, as in Li & Hoiem (one λ_o per old task) and Avalanche's
`LearningWithoutForgetting` (which adds one batchmean KL per head): a mean would give each old head λ/k, so the
third task's teacher would pull at half the strength of the second's. Avalanche's `LwFPlugin(alpha=λ·T², T)` gives
the same loss and gradients on this model (a test: its KL lacks the T² factor).

(the model's `distill(h, …)`; on the dense suite each head's term follows its kind: pixel-wise KL for
segmentation, class KL + L2 on box/objectness outputs for detection — benchmark/tasks/kinds/)

with z_t teacher logits, z_s student logits, KL averaged over the batch ("batchmean"). The T² factor keeps the
KD gradients on the scale of the cross-entropy (Hinton et al. 2015).

The student's features are those of the training batch's own forward pass, captured by a hook on the shared
layers that records only between `before_forward` and `after_forward`: a plugin that runs extra forwards before
this one's `before_backward` (DER's memory batches, in `der+lwf`) cannot hand LwF the features of another batch, so
a composition means the same whatever its order. λ = 0 adds no term at all, so the old heads get no gradient (not a
zero one, which Adam would turn into a step on stale moments): LwF at λ = 0 is naive training, bit for bit.

Class-IL (one head over every class, benchmark/harness/scenarios.py): one term, T²·KL on the logits of the classes of
the past experiences (as Mammoth's LwF distils the seen classes' logits and Avalanche's on an incremental classifier).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from avalanche.core import SupervisedPlugin

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.state import Stateful
from benchmark.tasks.distill import kd_loss
from benchmark.tuning.space import Choice, LogUniform, searchable


@dataclass(frozen=True)
class LwFConfig:
    alpha: float = field(default=1.0, metadata=searchable(LogUniform(  # λ: distillation weight vs cross-entropy
        0.1, 10.0, stability=True, source="Li & Hoiem 2017 use λ_o = 1; FACIL's grid search starts LwF's λ at 10")))
    temperature: float = field(default=2.0, metadata=searchable(Choice(  # T
        (1.0, 2.0, 4.0), source="Li & Hoiem 2017 use T = 2 (Hinton et al. 2015); Mammoth searches 2 and 4")))

    def __post_init__(self):
        if self.alpha < 0 or self.temperature <= 0:
            raise UserError(f"--lwf.alpha must be ≥ 0 and --lwf.temperature > 0 (got {self.alpha}, {self.temperature})")


class LwFPlugin(Stateful, SupervisedPlugin):
    # the teacher is saved as its state_dict and rebuilt as a copy of the model holding it; the hook is re-registered
    # at every experience's start; the captured features live within one step
    state_attrs = ("old_tasks", "old_classes", "last_kd")
    rebuilt_attrs = ("cfg", "teacher", "_feats", "_hook", "_capturing")

    def state_dict(self) -> dict:
        teacher = None if self.teacher is None else dict(self.teacher.state_dict())
        return super().state_dict() | {"teacher": teacher}

    def load_state_dict(self, state: dict, strategy=None) -> None:
        super().load_state_dict(state, strategy)
        self.teacher = None
        if state["teacher"] is not None:
            self.teacher = copy.deepcopy(strategy.model).eval().requires_grad_(False)
            self.teacher.load_state_dict(state["teacher"], strict=True)

    def __init__(self, cfg: LwFConfig):
        super().__init__()
        self.cfg, self.teacher, self.old_tasks, self.old_classes = cfg, None, [], []
        self._feats, self._hook, self._capturing = None, None, False
        self.last_kd: float | None = None  # the latest distillation term, for inspection

    def before_training_exp(self, strategy, **kwargs):
        # The forward pass already computes the shared features; capture them instead of a second forward.
        self._hook = strategy.model.shared.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        if self._capturing:  # the model's forward runs the shared layers once: this is the batch's features
            self._feats = output

    def before_forward(self, strategy, **kwargs):
        self._capturing, self._feats = True, None

    def after_forward(self, strategy, **kwargs):
        self._capturing = False

    def before_backward(self, strategy, **kwargs):
        if self.teacher is None or not self.old_tasks or self.cfg.alpha == 0:
            return
        with torch.no_grad():
            teacher_feats = self.teacher.features(strategy.mb_x)
        model = strategy.model  # its `distill` is kd_loss on logits, or the dense suite's term for the task's kind
        if getattr(strategy, "scenario", "task-il") == "class-il":  # the one head: the past experiences' classes
            old = self.old_classes
            kd = kd_loss(model.head(0, self._feats)[:, old], self.teacher.head(0, teacher_feats)[:, old],
                         self.cfg.temperature)
        else:
            kd = torch.stack([model.distill(t, model.head(t, self._feats), self.teacher.head(t, teacher_feats),
                                            self.cfg.temperature) for t in self.old_tasks]).sum()
        self.last_kd = float(kd.detach())
        strategy.loss = strategy.loss + self.cfg.alpha * kd

    def after_training_exp(self, strategy, **kwargs):
        self._hook.remove()
        self._feats = None
        self.old_tasks = sorted(set(self.old_tasks) | set(strategy.experience.task_labels))
        if getattr(strategy, "scenario", "task-il") == "class-il":
            classes = {int(c) for c in strategy.experience.dataset.targets.uniques}
            self.old_classes = sorted(set(self.old_classes) | classes)
        self.teacher = copy.deepcopy(strategy.model).eval().requires_grad_(False)


@STRATEGIES.register_plugins("lwf", config_cls=LwFConfig, trains_past_heads=True)
def lwf_plugins(cfg: LwFConfig, template_kwargs: dict) -> list:
    return [LwFPlugin(cfg)]
