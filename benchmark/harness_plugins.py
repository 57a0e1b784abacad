"""Avalanche plugins the harness attaches to every strategy: R-matrix rows, loss guard, timings, loss history,
progress bars."""

from __future__ import annotations

import math
import sys
import time

import torch
from avalanche.core import SupervisedPlugin
from tqdm import tqdm

from benchmark.errors import RunFailed


class PrimaryScoreCollector(SupervisedPlugin):
    """During eval, each task's primary metric (accuracy here) and mean held-out loss from the template's own eval
    loop.

    Reads the routed logits (B × max_width, -inf past the task's width) and compares argmax with mb_y per
    experience; `scores` / `losses` map experience id → value of the last eval call. The loss is the template's
    criterion on the same batch (`strategy.loss`, a batch mean), averaged over samples.
    """

    def __init__(self):
        super().__init__()
        self.scores: dict[int, float] = {}
        self.losses: dict[int, float] = {}
        self._correct = self._seen = 0
        self._loss_sum = 0.0

    def before_eval(self, strategy, **kwargs):
        self.scores, self.losses = {}, {}

    def before_eval_exp(self, strategy, **kwargs):
        self._correct = self._seen = 0
        self._loss_sum = 0.0

    def after_eval_iteration(self, strategy, **kwargs):
        pred = strategy.mb_output.argmax(dim=1)
        self._correct += int((pred == strategy.mb_y).sum())
        self._seen += len(strategy.mb_y)
        self._loss_sum += float(strategy.loss) * len(strategy.mb_y)

    def after_eval_exp(self, strategy, **kwargs):
        exp = strategy.experience.current_experience
        self.scores[exp] = self._correct / max(self._seen, 1)
        self.losses[exp] = self._loss_sum / max(self._seen, 1)


class FiniteLossGuard(SupervisedPlugin):
    """Stop a run on its first NaN/inf loss: its results would be meaningless and must not be written."""

    def before_backward(self, strategy, **kwargs):
        loss = strategy.loss.detach()
        if not torch.isfinite(loss).all():
            raise RunFailed(f"non-finite training loss ({float(loss.sum())}) at experience "
                            f"{strategy.experience.current_experience}, epoch {strategy.clock.train_exp_epochs}, "
                            f"iteration {strategy.clock.train_epoch_iterations}; try a lower --lr")


class TrainLog(SupervisedPlugin):
    """Wall time per training experience and mean training loss per epoch (a list per experience)."""

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
        self.epoch_loss[-1].append(self._sum / self._n if self._n else math.nan)

    def after_training_exp(self, strategy, **kwargs):
        self.exp_wall_s.append(time.perf_counter() - self._t0)
        if self.on_exp_end:
            self.on_exp_end(len(self.exp_wall_s) - 1, self.exp_wall_s[-1])


class ProgressBar(SupervisedPlugin):
    """A tqdm bar per training epoch (batches, loss, it/s). Shown only when stderr is a terminal, so CI logs and
    redirected output keep one line per event instead of carriage-return noise."""

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
