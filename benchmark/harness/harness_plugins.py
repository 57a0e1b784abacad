"""Avalanche plugins the harness attaches to every strategy: R-matrix rows, loss guard, timings, loss history,
progress bars."""

from __future__ import annotations

import math
import sys
import time

import torch
from avalanche.core import SupervisedPlugin
from tqdm import tqdm

from benchmark.errors import check_finite_losses
from benchmark.harness.scenarios import ClassILAccuracy
from benchmark.runtime.state import Stateful
from benchmark.tasks import kind_of


class PrimaryScoreCollector(Stateful, SupervisedPlugin):
    """During eval, each task's primary metric and mean held-out loss from the template's own eval loop.

    `specs`: the stream's tasks; each experience gets a fresh metric of its task's kind (benchmark/tasks/kinds),
    updated with the routed outputs and `kind.target_of(mb_y)`; its primary value fills R, the kind's other metrics
    land in `extras` (only when it has any). `scores` / `losses` / `extras` map experience id → value of the last
    eval call. The loss is the template's criterion on the same batch (`strategy.loss`, a batch mean), averaged
    over samples.

    Class-IL (`class_ranges`: each experience's classes in the one head, benchmark/harness/scenarios.py): the metric is
    `ClassILAccuracy` over the classes of the experiences trained so far (`trained_upto`, set by the evaluation
    before each row: None = all classes), its task-IL accuracy landing in `extras`.
    """


    state_attrs = ()
    # trained_upto: set before every row; the rest: per evaluation
    rebuilt_attrs = ("specs", "class_ranges", "trained_upto", "_metric", "_kind", "_seen", "_loss_sum", "scores",
                     "losses", "extras")
    def __init__(self, specs: list, class_ranges: list[list[int]] | None = None):
        super().__init__()
        self.specs, self.class_ranges, self.trained_upto = list(specs), class_ranges, None
        self.scores: dict[int, float] = {}
        self.losses: dict[int, float] = {}
        self.extras: dict[int, dict[str, float]] = {}
        self._metric = self._kind = None
        self._seen = 0
        self._loss_sum = 0.0

    def before_eval(self, strategy, **kwargs):
        self.scores, self.losses, self.extras = {}, {}, {}

    def before_eval_exp(self, strategy, **kwargs):
        self._seen = 0
        self._loss_sum = 0.0
        exp = strategy.experience.current_experience
        spec = self.specs[exp]
        self._kind = kind_of(spec)
        self._metric = self._kind.metric(spec)
        if self.class_ranges is not None:
            upto = len(self.class_ranges) - 1 if self.trained_upto is None else self.trained_upto
            self._metric = ClassILAccuracy(self.class_ranges[exp], sum(self.class_ranges[:upto + 1], []))

    def after_eval_iteration(self, strategy, **kwargs):
        self._metric.update(strategy.mb_output.detach(), self._kind.target_of(strategy.mb_y))
        self._seen += len(strategy.mb_y)
        self._loss_sum += float(strategy.loss) * len(strategy.mb_y)

    def after_eval_exp(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        values = {k: float(v) for k, v in self._metric.compute().items()}
        self.scores[exp] = values.pop(self._kind.primary)
        if values:
            self.extras[exp] = values
        self._metric = None
        self.losses[exp] = self._loss_sum / max(self._seen, 1)


class TaskLoss(Stateful, SupervisedPlugin):
    """Records `strategy.task_loss`, the criterion's loss of the training batch before any strategy's plugin adds a
    term (the harness puts this plugin before the strategy's own): SI differentiates it alone (Zenke et al.'s
    unregularised gradient). A clone, so a plugin that adds to `strategy.loss` in place (`+=`) leaves it alone; its
    gradient is the task loss's."""

    def before_backward(self, strategy, **kwargs):
        strategy.task_loss = strategy.loss.clone()


class FiniteLossGuard(Stateful, SupervisedPlugin):
    """Stop a run on its first NaN/inf loss: its results would be meaningless and must not be written.

    Checked before the optimizer step, after every plugin has added its terms to the loss in `before_backward`
    (LwF's distillation, a regulariser): checking in `before_backward` would see only the terms of the plugins
    that ran before it.

    `knobs`: the strategy's float knobs with their values (strategy_float_knobs), named in the message: a weight
    that scales a penalty (`--ewc.ewc-lambda 1e308`) overflows the loss as surely as a too-high lr."""


    state_attrs = ()
    rebuilt_attrs = ("knobs",)
    def __init__(self, knobs: tuple[str, ...] = ()):
        super().__init__()
        self.knobs = tuple(knobs)

    def before_update(self, strategy, **kwargs):
        loss = strategy.loss.detach()
        if not torch.isfinite(loss).all():  # one check on the device; the message only when it fails
            check_finite_losses({"loss": float(loss.sum())}, f"at experience {strategy.experience.current_experience}"
                                f", epoch {strategy.clock.train_exp_epochs}, iteration "
                                f"{strategy.clock.train_epoch_iterations}", knobs=self.knobs)


def strategy_float_knobs(cfg) -> tuple[str, ...]:
    """The chosen strategy's float knobs as flags with their values (`--ewc.ewc-lambda 20`; a combination: each
    part's), for FiniteLossGuard's message."""
    parts = cfg.strategy.split("+")
    return tuple(f"--{name}.{knob.replace('_', '-')} {value:g}" for key, value in cfg.to_dict().items()
                 for name, _, knob in [key.partition(".")] if name in parts and knob and isinstance(value, float))


class TrainLog(Stateful, SupervisedPlugin):
    """Wall time per training experience and mean training loss per epoch (a list per experience)."""


    state_attrs = ("exp_wall_s", "epoch_loss")
    rebuilt_attrs = ("on_exp_end", "_t0", "_sum", "_n")
    def __init__(self, on_exp_end=None):
        super().__init__()
        self.exp_wall_s: list[float] = []
        self.epoch_loss: list[list[float]] = []
        self.on_exp_end = on_exp_end  # callback(exp_index, wall_s) for progress lines
        self._t0 = 0.0
        self._sum = self._n = 0

    def before_training_exp(self, strategy, **kwargs):
        self._t0 = time.perf_counter()
        self.epoch_loss.append([])

    def before_training_epoch(self, strategy, **kwargs):
        self._sum, self._n = 0.0, 0

    def after_training_iteration(self, strategy, **kwargs):
        self._sum += float(strategy.loss.detach()) * len(strategy.mb_y)
        self._n += len(strategy.mb_y)

    def after_training_epoch(self, strategy, **kwargs):
        if self._n:  # a training-free strategy's pass over the data (simplecil, ranpac) has no loss to record
            self.epoch_loss[-1].append(self._sum / self._n)

    def after_training_exp(self, strategy, **kwargs):
        self.exp_wall_s.append(time.perf_counter() - self._t0)

    def after_training(self, strategy, **kwargs):
        # The harness's plugins run before the strategy's: work a strategy does in its own after_training_exp (slca's
        # statistics and classifier alignment) ends after that clock stopped. The experience's time ends here, once
        # every plugin is done (the harness trains one experience per train() call; joint: the stream's last).
        if not self.exp_wall_s:
            return
        self.exp_wall_s[-1] = time.perf_counter() - self._t0
        if self.on_exp_end:
            self.on_exp_end(len(self.exp_wall_s) - 1, self.exp_wall_s[-1])


class ProgressBar(Stateful, SupervisedPlugin):
    """A tqdm bar per training epoch (batches, loss, it/s). Shown only when stderr is a terminal, so CI logs and
    redirected output keep one line per event instead of carriage-return noise."""


    state_attrs = ()
    rebuilt_attrs = ("tag", "enabled", "_bar")
    def __init__(self, tag: str, enabled: bool | None = None):
        super().__init__()
        self.tag = tag
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None

    def before_training_epoch(self, strategy, **kwargs):
        if not self.enabled:
            return
        exp, epoch = strategy.experience.current_experience, strategy.clock.train_exp_epochs
        self._bar = tqdm(total=len(strategy.dataloader), desc=f"{self.tag} exp {exp} epoch {epoch + 1}/"
                         f"{strategy.train_epochs}", leave=False, file=sys.stderr, dynamic_ncols=True, unit="batch")

    def after_training_iteration(self, strategy, **kwargs):
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{float(strategy.loss.detach()):.3f}", refresh=False)
            self._bar.update(1)

    def after_training_epoch(self, strategy, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EpochLR(Stateful, SupervisedPlugin):
    """A per-epoch learning-rate factor re-applied to whatever optimizer the strategy holds: at the start of epoch e
    of a schedule, every parameter group's lr = its initial lr · factor(e). The schedule restarts every
    `restart_every` experiences.

    `cosine` and `step` restart at every experience (restart_every = 1): every strategy thus gets the per-task
    schedule of the single-task baselines (each task trained alone over a full schedule). One schedule over all
    experiences (`cosine-stream`, the dense suite document's "CosineAnnealingLR over the total epochs") gives the
    first task ×1.56 and the last ×0.19 of a baseline's learning-rate integral at 5 epochs × 3 tasks, so a drop
    against the baseline mixes under- and over-training with forgetting; hence the restart is the default, and the
    document's schedule an option (docs/deviations.md). Joint training is one experience."""


    state_attrs = ("experiences_started", "epoch", "base", "total", "history")
    rebuilt_attrs = ("restart_every",)
    def __init__(self, restart_every: int = 1):
        super().__init__()
        self.restart_every, self.experiences_started = restart_every, 0
        self.epoch, self.base, self.total = 0, None, 0
        self.history: list[float] = []  # lr of group 0 at each epoch, for inspection

    def factor(self, epoch: int) -> float:
        raise NotImplementedError

    def start(self, strategy) -> None:
        """A schedule starts (its first epoch, after every plugin's before_training_exp)."""

    def before_training_exp(self, strategy, **kwargs):
        if self.experiences_started % self.restart_every == 0:
            self.epoch = 0
        self.experiences_started += 1

    def before_training_epoch(self, strategy, **kwargs):
        if self.epoch == 0:
            self.start(strategy)
        groups = strategy.optimizer.param_groups
        if self.base is None or len(self.base) != len(groups):
            self.base = [g.get("initial_lr", g["lr"]) for g in groups]
            for g, b in zip(groups, self.base, strict=True):
                g["initial_lr"] = b
        factor = self.factor(self.epoch)
        for g, b in zip(groups, self.base, strict=True):
            g["lr"] = b * factor
        self.history.append(groups[0]["lr"])

    def after_training_epoch(self, strategy, **kwargs):
        self.epoch += 1


class CosineLR(EpochLR):
    """`--lr-schedule cosine` (experiences = 1): torch's CosineAnnealingLR with η_min = 0 over one experience's E
    epochs, factor(e) = ½(1 + cos(π e / E)), restarted every experience. `--lr-schedule cosine-stream`
    (experiences = T, the stream's length): one CosineAnnealingLR over all T·E epochs, stepped once per epoch and
    never restarted, factor(k) = ½(1 + cos(π k / (T·E))) at the stream's epoch k. E is the epochs the strategy
    trains an experience for (`--epochs`; GDumb's own under `--gdumb.schedule run`)."""

    def __init__(self, experiences: int = 1):
        super().__init__(restart_every=experiences)

    def start(self, strategy) -> None:  # read now that every plugin set train_epochs (GDumb sets its own)
        self.total = strategy.train_epochs * self.restart_every

    def factor(self, epoch: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(epoch, self.total) / self.total))


class StepLR(EpochLR):
    """`--lr-schedule step`: torch's StepLR(step_size=s, gamma=γ) stepped once per epoch, factor(e) = γ^⌊e/s⌋, and a
    new one per experience, as the Hat Swap notebooks build a new StepLR(3, 0.1) for every task."""


    state_attrs = EpochLR.state_attrs
    rebuilt_attrs = ("restart_every", "step_size", "gamma")
    def __init__(self, step_size: int, gamma: float):
        super().__init__()
        self.step_size, self.gamma = step_size, gamma

    def factor(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)


class FreshOptimizer(Stateful, SupervisedPlugin):
    """`--fresh-optimizer`: every experience after the first starts from an empty optimizer state (Adam: moments
    and step count, so its bias correction restarts too), the same parameters and settings; with the learning
    rate restored by the schedule (or never changed: constant), that is a new optimizer per task, as the Hat Swap
    notebooks build one. Joint training is one experience."""


    state_attrs = ("resets",)
    rebuilt_attrs = ()
    def __init__(self):
        super().__init__()
        self.resets = 0

    def before_training_exp(self, strategy, **kwargs):
        if strategy.optimizer.state:
            strategy.optimizer.state.clear()
            self.resets += 1


def schedule_span(meta, stream_experiences: int) -> int:
    """How many experiences one `cosine-stream` schedule spans: one whole training of one model. That is the
    stream's T experiences for a strategy that trains one model through the stream; one for joint training (one
    experience over the merged data: a cosine over its own E epochs) and for a strategy that trains a fresh model
    at every experience (single_task's baselines, gdumb: each its own training, so each its own cosine over E
    epochs, as a task trained alone under the document's recipe)."""
    return 1 if meta.one_shot or meta.restarts_each_experience else stream_experiences


def schedule_plugins(cfg, meta, stream_experiences: int) -> list:
    """The run's learning-rate schedule and optimizer restarts (RunConfig's lr_schedule, fresh_optimizer); `meta`:
    the strategy's StrategyMeta, `stream_experiences`: the length of the scenario's train stream."""
    span = schedule_span(meta, stream_experiences)
    schedule = {"constant": [], "cosine": [CosineLR()], "cosine-stream": [CosineLR(span)],
                "step": [StepLR(cfg.lr_step_size, cfg.lr_gamma)]}[cfg.lr_schedule]
    return [FreshOptimizer()] * cfg.fresh_optimizer + schedule


def describe_training(cfg, meta, stream_experiences: int) -> str:
    """One line for tables: optimizer, learning rate and its schedule, epochs, batch size (arguments as
    schedule_plugins')."""
    span = schedule_span(meta, stream_experiences)
    stream_cosine = ("one cosine over the run's epochs" if meta.one_shot
                     else "cosine restarted with the model every experience" if meta.restarts_each_experience
                     else f"one cosine over all {span * cfg.epochs} epochs of the stream's {span} "
                          f"experience{'s' * (span != 1)}, not restarted")
    sched = {"constant": "constant", "cosine": "cosine restarted every experience", "cosine-stream": stream_cosine,
             "step": f"×{cfg.lr_gamma:g} every {cfg.lr_step_size} epoch{'s' * (cfg.lr_step_size != 1)}, restarted "
                     "every experience"}[cfg.lr_schedule]
    epochs = f"{cfg.epochs} epochs over the merged tasks" if meta.one_shot else f"{cfg.epochs} epochs per experience"
    if meta.own_budget is not None:  # a strategy that trains for its own epochs and schedule (gdumb) says which
        sched, epochs = meta.own_budget(cfg.strategy_args, sched)
    decay = f", weight decay {cfg.weight_decay:g}" if cfg.weight_decay else ""
    fresh = ", a fresh optimizer every experience" if cfg.fresh_optimizer else ""
    sampler = ", class-balanced sampling" if cfg.sampler == "class-balanced" else ""
    return f"{cfg.optimizer} lr {cfg.lr:g} ({sched}){decay}{fresh}, {epochs}, batch {cfg.batch_size}{sampler}"
