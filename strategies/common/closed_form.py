"""What the training-free strategies share (strategies/simplecil.py, ranpac.py): a network that is the backbone and a
classifier fitted in closed form on its pooled features, and the template that fits it.

    ClosedFormNet       x → f = backbone(x) (B×D, the model's `feat_dim`) → r = represent(f) → head t: B × k_t logits.
                        The Hat Swap network's shared layers and heads are not part of it: the classifier reads the
                        backbone's features, as PILOT's SimpleCIL and RanPAC read the ViT's [CLS] feature.
    ClosedFormTemplate  Avalanche's SupervisedTemplate whose training of an experience is one pass over its data
                        without gradients (`net.accumulate(f, column)` per batch), then `net.fit()`: no loss, no
                        backward, no optimizer (its `make_optimizer` is a no-op; the run's optimizer never steps).

Columns: every (head, class) pair has one, head t's classes at `offsets[t] .. offsets[t] + k_t − 1`: a task's own
classes in task-IL (a binary task's class 0 is not another task's class 0), the one head's classes in class- and
domain-IL (benchmark/harness/scenarios.py). A sample of task t with label y is column offsets[t] + y.

A class not seen in training yet must not win: once a head has a seen class, its unseen classes' logits are −inf
(the -inf the model pads with; class-IL's accuracy takes the argmax over the seen classes anyway). A head with no seen
class (before training, or a task not reached yet in task-IL) gives 0 for every class: the untrained classifier.
"""

from __future__ import annotations

import itertools

import torch
from avalanche.models import MultiTaskModule
from avalanche.training.templates import SupervisedTemplate

from benchmark.errors import UserError
from benchmark.models.trunk import route
from benchmark.runtime.randomness import own_generator


class ClosedFormNet(MultiTaskModule):
    """The backbone of `net` (a Hat Swap network; on cached features its nn.Identity) and one classifier head per
    task of `net.tasks`. A subclass sets `heads` (a ModuleList; head t maps represent(f) to k_t scores) and defines
    `represent`, `accumulate` and `fit`."""

    def __init__(self, net, name: str):
        """The heads' kinds are checked before (StrategyMeta.task_kinds, when the strategy is built)."""
        super().__init__()
        if getattr(net, "feat_dim", None) is None:
            raise UserError(f"--strategy {name} needs the backbone's pooled features; this network's backbone gives "
                            f"{net.feature_form}s: use a stream whose tasks read vectors")
        self.backbone, self.tasks, self.head_dims = net.backbone, list(net.tasks), list(net.head_dims)
        self.frozen_backbone, self.feature_form, self.feat_dim = True, "vector", net.feat_dim
        self.autocast_dtype = getattr(net, "autocast_dtype", None)
        self.offsets = [0, *itertools.accumulate(self.head_dims)][:-1]
        self.register_buffer("seen", torch.zeros(sum(self.head_dims), dtype=torch.bool))  # per column

    @property
    def compute_dtype(self) -> torch.dtype:
        """The classifier's dtype (float32; float64 under --dtype float64): its heads' parameters'."""
        return next(self.heads.parameters()).dtype


    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: its dropout and norms stay fixed
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features, B × D, in the classifier's dtype."""
        if self.autocast_dtype is None:
            return self.backbone(x.to(self.compute_dtype)).to(self.compute_dtype)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            return self.backbone(x.to(self.compute_dtype)).to(self.compute_dtype)

    def represent(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

    def columns(self, y: torch.Tensor, task_labels: torch.Tensor) -> torch.Tensor:
        """Each sample's column: offsets[t] + y."""
        offsets = torch.as_tensor(self.offsets, device=y.device)
        return offsets[task_labels.long()] + y.long()

    def head(self, task: int, rep: torch.Tensor) -> torch.Tensor:
        """Head `task`'s logits, its unseen classes at −inf once it has a seen one."""
        out = self.heads[task](rep)
        seen = self.seen[self.offsets[task]: self.offsets[task] + self.head_dims[task]]
        return out.masked_fill(~seen, float("-inf")) if bool(seen.any()) else out

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor | dict[int, torch.Tensor]:
        rep = self.represent(self.features(x))
        if task_labels is None:
            return {t: self.head(t, rep) for t in range(len(self.head_dims))}
        return route(task_labels, rep, self.head_dims, float("-inf"), lambda t, mask: self.head(t, rep[mask]))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.head(task_label, self.represent(self.features(x)))

    def start_experience(self, n: int, generator: torch.Generator) -> None:
        """Before the pass over an experience of `n` samples (`generator`: the strategy's own)."""

    def accumulate(self, feats: torch.Tensor, columns: torch.Tensor) -> None:
        raise NotImplementedError

    def fit(self) -> None:
        raise NotImplementedError


class ClosedFormTemplate(SupervisedTemplate):
    """Training an experience = one pass over its data with no gradient (the harness's plugins see its one epoch
    begin and end: the data order and the fast batches of cached features are theirs; no iteration hooks run, as
    there is no loss or step), then the net's closed-form fit. `name`: the strategy's, for its own generator."""

    def __init__(self, *, model: ClosedFormNet, name: str, **kwargs):
        super().__init__(model=model, **kwargs)
        self.name = name

    def make_optimizer(self, **kwargs):
        """Nothing to optimise: the classifier is fitted in closed form and the backbone is frozen."""

    def _train_exp(self, experience, eval_streams=None, **kwargs):
        self._before_training_epoch(**kwargs)
        self.model.eval()
        self.model.start_experience(len(self.adapted_dataset), own_generator(self, self.name))
        with torch.no_grad():
            for batch in self.dataloader:
                self.mbatch = batch
                self._unpack_minibatch()
                self.model.accumulate(self.model.features(self.mb_x), self.model.columns(self.mb_y, self.mb_task_id))
            self.model.fit()
        self._after_training_epoch(**kwargs)


def training_free_budget(cfg, run_schedule: str) -> tuple[str, str]:
    """The training line's schedule and epochs (benchmark/harness/harness_plugins.py describe_training)."""
    return "none: no optimizer step", "one pass over each experience's data (closed-form fit, no gradient)"
