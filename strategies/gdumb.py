"""GDumb (Prabhu et al. 2020): a greedy class-balanced memory of `mem_size` samples; at every experience the
network is reset to its initial weights and trained on the memory alone — nothing of the stream but what the
memory holds. The baseline that asks whether a method beats "store a balanced sample and retrain".

Greedy balancing: a new sample is stored while the memory has room; once full, it replaces a random sample of the
currently largest group if its own group is smaller than that. Groups are (task, class) — the binary tasks' class
labels repeat across tasks, so Avalanche's GDumbPlugin, which balances on the class alone, would pool the three
tasks' positives into one group; on the dense suite (packed targets, no single class) a group is a task. Each
experience's training starts from the initial weights and a fresh optimizer state. Default memory: 500 samples
(Mammoth's buffer 500 setting).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass

import torch
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES


@dataclass(frozen=True)
class GDumbConfig:
    mem_size: int = 500  # samples kept, balanced over (task, class)

    def __post_init__(self):
        if self.mem_size < 1:
            raise UserError(f"--gdumb.mem-size must be ≥ 1 (got {self.mem_size})")


class GDumbPlugin(SupervisedPlugin):
    def __init__(self, cfg: GDumbConfig):
        super().__init__()
        self.cfg, self.initial = cfg, None
        self.groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)  # group → [(experience, index)]
        self.datasets: list = []  # experience id → its training dataset
        self.generator = torch.Generator().manual_seed(torch.initial_seed())

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


@STRATEGIES.register("gdumb", config_cls=GDumbConfig, restarts_each_experience=True)
def build_gdumb(cfg: GDumbConfig, plugins=(), **template_kwargs) -> SupervisedTemplate:
    return SupervisedTemplate(plugins=[*plugins, GDumbPlugin(cfg)], **template_kwargs)
