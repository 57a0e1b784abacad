"""Which training samples go into which batch: the task-interleaved batches of joint training, and the
class-balanced sampling of `--sampler class-balanced` (the Hat Swap notebooks' `WeightedRandomSampler`).

Per epoch, each task t of the dataset gives a queue of N_t indices (N_t = its sample count):

    shuffle          a random permutation of the task's samples (each once per epoch)
    class-balanced   N_t draws with replacement, sample i drawn with probability ∝ 1 / n_t(y_i), n_t(c) = the
                     number of task t's samples of class c (torch's WeightedRandomSampler(w, N_t), replacement=True,
                     so each class of the task is drawn equally often in expectation; a 1 : 2 task gives 1 : 1)

and the queues are taken round-robin (task 0, 1, …, T−1, 0, 1, …; a task whose queue has run out leaves the
rotation); batches are consecutive chunks of B of that sequence. With one task (an experience of a sequential
run) the sequence is the task's queue. Randomness comes from the sampler's `generator`, drawn once per epoch: the
run's data-order generator, which the harness installs (benchmark/runtime/randomness.py), so the run seed fixes the
order and every strategy at that seed gets the same one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader, Sampler

from benchmark.runtime.state import Stateful


def balanced_draw(targets: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """len(targets) positions into `targets`, drawn with replacement with weights 1 / (count of the class)."""
    _, inverse, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse].double()
    return torch.multinomial(weights, len(targets), replacement=True, generator=generator)


class InterleavedTaskBatches(Sampler[list[int]]):
    """Index batches over a dataset whose sample i belongs to task `task_labels[i]` and, when `targets` is given,
    to class `targets[i]` (class-balanced draws); see the module docstring."""

    def __init__(self, task_labels: Sequence[int], batch_size: int, targets: Sequence[int] | None = None):
        self.batch_size = batch_size
        labels = torch.as_tensor(list(task_labels))
        self.by_task = [torch.nonzero(labels == t).flatten() for t in torch.unique(labels).tolist()]
        self.targets = None if targets is None else torch.as_tensor(list(targets))
        self.generator: torch.Generator | None = None  # None: torch's global one

    def task_queue(self, idx: torch.Tensor) -> list[int]:
        if self.targets is None:
            return idx[torch.randperm(len(idx), generator=self.generator)].tolist()
        return idx[balanced_draw(self.targets[idx], self.generator)].tolist()

    def epoch_order(self) -> list[int]:
        queues = [self.task_queue(idx) for idx in self.by_task]
        order, depth = [], max(len(q) for q in queues)
        for k in range(depth):  # round k takes the k-th sample of every task that still has one
            order += [q[k] for q in queues if k < len(q)]
        return order

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order()
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    def __len__(self) -> int:
        n = sum(len(idx) for idx in self.by_task)
        return -(-n // self.batch_size)


def interleaved_loader(data, batch_size: int, device, balanced: bool = False, num_workers: int = 0,
                       pin_memory=None, persistent_workers: bool = False) -> DataLoader:
    """A torch DataLoader over an Avalanche dataset (its `targets_task_labels`, and `targets` when balanced)."""
    sampler = InterleavedTaskBatches(list(data.targets_task_labels), batch_size,
                                     list(data.targets) if balanced else None)
    return DataLoader(data, batch_sampler=sampler, collate_fn=data.collate_fn, num_workers=num_workers,
                      pin_memory=device.type == "cuda" if pin_memory is None else pin_memory,
                      persistent_workers=persistent_workers and num_workers > 0)


class ClassBalancedSampling(Stateful, SupervisedPlugin):
    """`--sampler class-balanced`: every experience's training loader (the template's, joint's interleaved one, or
    GDumb's memory) becomes class-balanced draws over the same adapted dataset, interleaved by task. Installed
    before the strategy's own plugins run (a strategy that replaces the loader itself, replay, is refused at
    config time: benchmark/config.py)."""

    def before_training_exp(self, strategy, **kwargs):
        strategy.dataloader = interleaved_loader(strategy.adapted_dataset, strategy.train_mb_size, strategy.device,
                                                 balanced=True)
