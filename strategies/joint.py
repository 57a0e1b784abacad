"""Joint training (Hat Swap): one training run on every task's data merged; each sample keeps its task label and
is routed to its own head, so the gradients of all heads reach the shared layers together. Not continual: R has a
single row, and BWT / forgetting / FWT are undefined (N/A, not 0).

The upper bound is budget-matched. Each epoch every task's samples are shuffled and taken round-robin (task 0, 1,
…, T−1, 0, 1, …; a task whose samples have run out leaves the rotation), and mini-batches are consecutive chunks
of B of that sequence. So per epoch task t contributes exactly its N_t samples, the number a sequential run trains
it on per epoch, and every batch holds ⌊B/T⌋ or ⌈B/T⌉ samples of each task, the extra ones passing round-robin
from batch to batch (the chunk starts move by B mod T). Avalanche's `TaskBalancedDataLoader`, which
`JointTraining` uses by default, gives every batch ⌊B/T⌋ + 1 samples of the first B mod T tasks and ⌊B/T⌋ of the
others, and cycles the tasks that run out first until the last one ends: with equal task sizes the first tasks
see (⌊B/T⌋ + 1)/⌊B/T⌋ times their data (×1.05 at B = 64, T = 3; ×2 with 33 % more steps at B = 4).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from avalanche.training.supervised import JointTraining
from torch.utils.data import DataLoader, Sampler

from benchmark.registry import STRATEGIES


class InterleavedTaskBatches(Sampler[list[int]]):
    """Index batches over a dataset whose sample i belongs to task `task_labels[i]` (see the module docstring).

    Randomness comes from torch's global generator, drawn once per epoch, so the run seed fixes the order."""

    def __init__(self, task_labels: Sequence[int], batch_size: int):
        self.batch_size = batch_size
        labels = torch.as_tensor(list(task_labels))
        self.by_task = [torch.nonzero(labels == t).flatten() for t in torch.unique(labels).tolist()]

    def epoch_order(self) -> list[int]:
        queues = [idx[torch.randperm(len(idx))].tolist() for idx in self.by_task]
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


class BudgetMatchedJointTraining(JointTraining):
    """Avalanche's `JointTraining` with the interleaved task batches above instead of its task-balanced loader, and
    with the model on the strategy's device at every evaluation.

    Avalanche's `JointTraining.model_adaptation` moves the model to the device once per experience it was trained
    on; before training there are none, so the untrained model's evaluation (R's init row) ran a CPU model on CUDA
    batches ("mat1 is on cuda:0, different from other tensors on cpu"; under bf16 autocast "Input type (BFloat16)
    and bias type (float) should be the same")."""

    def model_adaptation(self, model=None):
        return super().model_adaptation(model).to(self.device)

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None, persistent_workers=False,
                              **kwargs):
        data = self.adapted_dataset
        self.dataloader = DataLoader(
            data, batch_sampler=InterleavedTaskBatches(list(data.targets_task_labels), self.train_mb_size),
            collate_fn=data.collate_fn, num_workers=num_workers,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
            persistent_workers=persistent_workers and num_workers > 0)


@STRATEGIES.register("joint", one_shot=True)
def build_joint(cfg=None, plugins=(), **template_kwargs) -> JointTraining:
    return BudgetMatchedJointTraining(plugins=list(plugins), **template_kwargs)
