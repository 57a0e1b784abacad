"""GDumb (Prabhu et al. 2020): a greedy class-balanced memory of `mem_size` samples; at every experience the
network is reset to its initial weights and trained on the memory alone — nothing of the stream but what the
memory holds. The baseline that asks whether a method beats "store a balanced sample and retrain".

Greedy balancing: a new sample is stored while the memory has room; once full, it replaces a random sample of the
currently largest group if its own group is smaller than that. Groups are (task, class) — the binary tasks' class
labels repeat across tasks, so Avalanche's GDumbPlugin, which balances on the class alone, would pool the three
tasks' positives into one group; on the dense suite (packed targets, no single class) a group is a task. Each
experience's training starts from the initial weights and a fresh optimizer state.

Its own budget. The method trains the memory to convergence, not for the stream's epochs: the paper (§4) and
Mammoth's `fit_buffer` (models/gdumb.py: `--fitting_epochs 256`, `--maxlr 0.05`, `--minlr 0.0005`) train
`epochs` = 256 epochs with SGDR (Loshchilov & Hutter 2017; torch's CosineAnnealingWarmRestarts, T_0 = 1, T_mult = 2,
η_min = max/100) after one warm-start epoch at max/10. Here the maximum is the run's learning rate and the optimizer
the run's (Adam by default; the paper's SGD at 0.05 is not what the other strategies get), so GDumb differs from
them in its data and its budget only. `schedule run` keeps the run's --lr-schedule instead, spanning GDumb's
epochs (a cosine over its 256; `step` is refused: a step every few epochs over 256 would decay the lr to nothing).
Left out: the paper's CutMix (on cached features there are no images to mix) and gradient clipping. Mammoth trains
once, after the last task; R needs a model after every experience, so GDumb trains the memory at every one (T times
the cost).
Defaults: memory 500 (Mammoth's buffer 500 setting), 256 epochs (the `zoo` profile keeps them: about 2,000 steps
per experience, some 6 minutes a run on 2 CPU cores).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from benchmark.errors import UserError
from benchmark.harness.harness_plugins import StepLR
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import derived_seed, own_generator
from benchmark.runtime.state import Stateful
from benchmark.tuning.space import Choice, searchable


@dataclass(frozen=True)
class GDumbConfig:
    mem_size: int = 500  # samples kept, balanced over (task, class)
    epochs: int = field(default=256, metadata=searchable(Choice(  # epochs over the memory per experience
        (16, 32, 64), source="Prabhu et al. 2020 and Mammoth's fitting_epochs use 256; capped at 64 to keep 16 "
        "trials within the tuning budget on 2 CPU cores (at 256 a zoo run takes 10 minutes)")))
    # sgdr: the paper's schedule (module docstring); run: the run's --lr-schedule
    schedule: str = field(default="sgdr", metadata={"choices": ("sgdr", "run")})
    min_lr_ratio: float = 0.01  # SGDR's η_min / the run's lr (Mammoth: 5e-4 / 5e-2)

    def __post_init__(self):
        if self.mem_size < 1 or self.epochs < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"--gdumb.mem-size and --gdumb.epochs must be ≥ 1 and --gdumb.min-lr-ratio in [0, 1] (got "
                            f"{self.mem_size}, {self.epochs}, {self.min_lr_ratio})")


def sgdr_factors(epochs: int, min_ratio: float) -> list[float]:
    """The learning rate of each epoch / the maximum, as Mammoth's fit_buffer sets it: epoch 0 at 1/10 (warm start),
    epoch 1 at the maximum, then torch's CosineAnnealingWarmRestarts(T_0=1, T_mult=2, η_min) stepped once per epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=2, eta_min=min_ratio)
    out = []
    for epoch in range(epochs):
        if epoch >= 2:
            sched.step()
        out.append(0.1 if epoch == 0 else 1.0 if epoch == 1 else opt.param_groups[0]["lr"])
    return out


class GDumbPlugin(Stateful, SupervisedPlugin):
    # the memory is kept as (experience, position) pairs; its datasets come back from the run's train stream
    state_attrs = ("initial", "base_lrs", "epoch", "groups")
    rebuilt_attrs = ("cfg", "factors", "datasets", "generator")  # generator: own_generator's, rebound per training

    def load_state_dict(self, state: dict, strategy=None) -> None:
        super().load_state_dict(state, strategy)
        trained = strategy.clock.train_exp_counter  # restored before the plugins: the experiences trained so far
        self.datasets = [strategy.resume_stream[e].dataset for e in range(trained)]

    def __init__(self, cfg: GDumbConfig):
        super().__init__()
        self.cfg, self.initial = cfg, None
        self.factors, self.base_lrs, self.epoch = sgdr_factors(cfg.epochs, cfg.min_lr_ratio), None, 0
        self.groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)  # group → [(experience, index)]
        self.datasets: list = []  # experience id → its training dataset
        # its own (benchmark/runtime/randomness.py): from the run seed once training starts; torch's seed until then
        self.generator = torch.Generator().manual_seed(derived_seed(torch.initial_seed(), "strategy", "gdumb"))

    def size(self) -> int:
        return sum(len(v) for v in self.groups.values())

    def add(self, group: tuple, item: tuple[int, int]) -> None:
        if self.size() < self.cfg.mem_size:
            self.groups[group].append(item)
            return
        largest = max(self.groups, key=lambda k: len(self.groups[k]))
        if len(self.groups[group]) < len(self.groups[largest]):
            victims = self.groups[largest]
            victims.pop(int(torch.randint(len(victims), (1,), generator=self.generator)))
            self.groups[group].append(item)

    def before_training(self, strategy, **kwargs):
        self.generator = own_generator(strategy, "gdumb")
        if self.cfg.schedule == "run" and any(isinstance(p, StepLR) for p in strategy.plugins):
            raise UserError("--gdumb.schedule run with --lr-schedule step: a step every --lr-step-size epochs over "
                            f"GDumb's {self.cfg.epochs} epochs decays the lr to nothing; use --gdumb.schedule sgdr "
                            "(its own) or --lr-schedule constant / cosine")
        if self.initial is None:
            self.initial = copy.deepcopy(strategy.model.state_dict())

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        dataset = strategy.experience.dataset
        exp = len(self.datasets)
        self.datasets.append(dataset)
        tasks, targets = list(dataset.targets_task_labels), list(dataset.targets)
        for i in torch.randperm(len(dataset), generator=self.generator).tolist():
            self.add((int(tasks[i]), int(targets[i])), (exp, i))
        by_exp = defaultdict(list)
        for items in self.groups.values():
            for e, i in items:
                by_exp[e].append(i)
        strategy.adapted_dataset = concat_datasets([self.datasets[e].subset(sorted(ix))
                                                    for e, ix in sorted(by_exp.items())])

    def before_training_exp(self, strategy, **kwargs):
        strategy.model.load_state_dict(self.initial)
        strategy.optimizer.state.clear()
        strategy.train_epochs = self.cfg.epochs  # its own budget (the template reads it for every experience)
        self.epoch = 0
        if self.base_lrs is None:
            self.base_lrs = [g.get("initial_lr", g["lr"]) for g in strategy.optimizer.param_groups]

    def before_training_epoch(self, strategy, **kwargs):
        # after the harness's schedule plugins (this plugin comes last): its learning rate is the one used
        if self.cfg.schedule == "sgdr":
            factor = self.factors[min(self.epoch, len(self.factors) - 1)]
            for group, base in zip(strategy.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * factor

    def after_training_epoch(self, strategy, **kwargs):
        self.epoch += 1


def own_budget(cfg: GDumbConfig, run_schedule: str) -> tuple[str, str]:
    """The training line's schedule and epochs for a GDumb run (benchmark/harness/harness_plugins.py
    describe_training)."""
    schedule = "SGDR from a warm-start epoch, T_0 = 1, T_mult = 2" if cfg.schedule == "sgdr" else run_schedule
    return schedule, f"{cfg.epochs} epochs over its memory per experience"


@STRATEGIES.register("gdumb", config_cls=GDumbConfig, restarts_each_experience=True, trains_past_heads=True,
                     own_budget=own_budget)
def build_gdumb(cfg: GDumbConfig, plugins=(), **template_kwargs) -> SupervisedTemplate:
    return SupervisedTemplate(plugins=[*plugins, GDumbPlugin(cfg)], **template_kwargs)
