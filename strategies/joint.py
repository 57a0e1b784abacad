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
The batches: benchmark/harness/sampling.py (`--sampler class-balanced`: each task's queue is drawn class-balanced
instead).
"""

from __future__ import annotations

from avalanche.training.supervised import JointTraining

from benchmark.harness.sampling import InterleavedTaskBatches, interleaved_loader  # noqa: F401  (the batches; re-exported)
from benchmark.registry import STRATEGIES


class BudgetMatchedJointTraining(JointTraining):
    """Avalanche's `JointTraining` with the interleaved task batches instead of its task-balanced loader, and
    with the model on the strategy's device at every evaluation.

    Avalanche's `JointTraining.model_adaptation` moves the model to the device once per experience it was trained
    on; before training there are none, so the untrained model's evaluation (R's init row) ran a CPU model on CUDA
    batches ("mat1 is on cuda:0, different from other tensors on cpu"; under bf16 autocast "Input type (BFloat16)
    and bias type (float) should be the same")."""

    def model_adaptation(self, model=None):
        return super().model_adaptation(model).to(self.device)

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None, persistent_workers=False,
                              **kwargs):
        self.dataloader = interleaved_loader(self.adapted_dataset, self.train_mb_size, self.device,
                                             num_workers=num_workers, pin_memory=pin_memory,
                                             persistent_workers=persistent_workers)


@STRATEGIES.register("joint", one_shot=True, trains_past_heads=True)
def build_joint(cfg=None, plugins=(), **template_kwargs) -> JointTraining:
    return BudgetMatchedJointTraining(plugins=list(plugins), **template_kwargs)
