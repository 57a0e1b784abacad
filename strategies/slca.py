"""SLCA, Slow Learner with Classifier Alignment (Zhang et al., ICCV 2023; the authors' GengDavid/SLCA
models/slca.py, which PILOT's models/slca.py copies). Fine-tuning a pretrained backbone, plus two changes:

Slow learner. The backbone trains at `backbone_lr_ratio` × the classifier's learning rate: the repo's
`bcb_lrscale` = 1/100 (SGD, 0.0001 for the backbone against 0.01 for the classifier). Here the ratio scales the
run's `--lr` in the optimizer's backbone group (StrategyMeta.slow_backbone; benchmark/models/backbone_training.py's
two groups), with the run's optimizer (Adam by default, not the repo's SGD with momentum 0.9 and decay 5e-4).
Stage 1 trains the current task's classifier alone: the repo freezes the old heads and takes the cross-entropy over
the current task's logits. Task-IL heads are that already; in class-IL (one head over every class) the logits of
every class outside the current experience are set to -inf before the loss (a local cross-entropy: no gradient
reaches the other classes' rows).

Classifier alignment. After each experience, every class c it taught gets the mean and covariance of the
features its head reads, on the experience's training data in eval mode (the repo: `_compute_class_mean`, the
backbone's output, the input of its `fc`):

    μ_c = mean_i f_i,    Σ_c = cov(f) + 1e-4 · I      (f_i: the features of class c's samples, float64)

On the Hat Swap network (backbone → shared → heads) the classifier is `heads` and its input is the shared layers'
output (`model.features`), so f is that (with `--hidden ""` the heads read the backbone's output, as in the repo; the
shared layers, new like a classifier, train at `--lr`). From the second experience on, the heads alone are trained
on features drawn from the stored Gaussians of every class seen so far, for `ca_epochs` epochs (repo: 5) of
`samples_per_class` (repo: 256) draws per class, in batches of `samples_per_class`, SGD at `ca_lr` (repo: 0.01, its
classifier's lr), momentum 0.9, weight decay 5e-4, cosine over the epochs:

    x ~ N(s_c · μ_c, Σ_c),  s_c = 0.9 + 0.1 · (e_c + 1) / E    (e_c: the experience that taught c, E: experiences
                                                                 so far; the repo's shrinking of older means)
    loss = CE(z / (τ · mean_g ‖z_g‖₂), y)                      (the repo's logit normalisation, τ = `logit_norm`,
                                                                 repo 0.1; g: the seen experiences' logit groups)

Task-IL: each head is aligned on its own classes (its logits are one group); class-IL: the one head on all seen
classes, one group per experience. The draws come from the strategy's own generator (`own_generator`), so paired
runs stay paired. As the repo (`fc.backup()` … `fc.recall()`), the aligned heads serve the evaluation after the
experience, and the next experience's training starts from the heads as they were before alignment.

Heads whose targets are class labels only (binary, multiclass); task- and class-IL (a domain-IL head's classes
recur in every experience).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import nn
from torch.utils.data import DataLoader

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES, template_with
from benchmark.runtime.randomness import own_generator
from benchmark.runtime.state import Stateful
from benchmark.tuning.space import LogUniform, searchable

COV_RIDGE = 1e-4  # added to every stored covariance (the repo's), so it is positive definite and has a Cholesky
CA_MOMENTUM, CA_WEIGHT_DECAY = 0.9, 5e-4  # the repo's SGD for alignment (its stage-1 settings too)


@dataclass(frozen=True)
class SLCAConfig:
    backbone_lr_ratio: float = field(default=0.01, metadata=searchable(LogUniform(  # backbone lr / classifier lr
        1e-3, 0.1, source="Zhang et al. 2023 (SLCA) and their repo's bcb_lrscale use 1/100; the paper's Table 3 "
        "compares backbone rates a decade either side")))
    ca_epochs: int = 5  # alignment epochs (ca_epochs in every exps/slca config; 0: the slow learner alone)
    ca_lr: float = 0.01  # alignment SGD's learning rate (the repo's classifier lr)
    samples_per_class: int = 256  # Gaussian draws per class and epoch, also the alignment batch (repo: 256)
    # τ of the logit normalisation, the repo's ca_with_logit_norm: 0.1 in its CIFAR-100, CUB and ImageNet-R configs
    # (exps/slca/*.json; Cars: 0.05); 0: plain cross-entropy
    logit_norm: float = 0.1

    def __post_init__(self):
        if not 0 < self.backbone_lr_ratio <= 1:
            raise UserError(f"--slca.backbone-lr-ratio must be in (0, 1] (got {self.backbone_lr_ratio}); for a "
                            f"backbone that does not train, use --backbone-mode frozen")
        if self.ca_epochs < 0 or self.samples_per_class < 1 or self.ca_lr <= 0 or self.logit_norm < 0:
            raise UserError(f"--slca.ca-epochs must be ≥ 0, --slca.samples-per-class ≥ 1, --slca.ca-lr > 0 and "
                            f"--slca.logit-norm ≥ 0 (got {self.ca_epochs}, {self.samples_per_class}, {self.ca_lr}, "
                            f"{self.logit_norm})")


@dataclass
class ClassGaussian:
    """One class's stored feature distribution: mean (D), covariance (D×D) and its Cholesky factor, float64."""

    mean: torch.Tensor
    cov: torch.Tensor
    experience: int  # the experience (0-based) that taught the class
    chol: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.chol = torch.linalg.cholesky(self.cov)

    def sample(self, n: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
        """n × D draws from N(scale · mean, cov)."""
        z = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return scale * self.mean + z @ self.chol.T


def class_gaussians(feats: torch.Tensor, labels: torch.Tensor, experience: int) -> dict[int, ClassGaussian]:
    """{class: its features' mean and covariance (+ COV_RIDGE · I)} from N × D features and their N labels."""
    out = {}
    for c in sorted(set(labels.tolist())):
        f = feats[labels == c].double()
        spread = torch.cov(f.T, correction=1).reshape(f.shape[1], f.shape[1]) if len(f) > 1 else torch.zeros(
            f.shape[1], f.shape[1], dtype=torch.float64)  # one sample: no spread to measure
        out[c] = ClassGaussian(f.mean(0), spread + COV_RIDGE * torch.eye(f.shape[1], dtype=torch.float64),
                               experience)
    return out


def head_module(model, task: int) -> nn.Module:
    """The module of head `task`: the Hat Swap network's ModuleList, a multi-task model's ModuleDict by task name."""
    heads = model.heads
    return heads[model.tasks[task].name] if isinstance(heads, nn.ModuleDict) else heads[task]


@torch.no_grad()
def head_inputs(model, dataset, task: int, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N × D inputs of head `task` on the dataset's samples, N labels), the model in eval mode, the dataset's eval
    transforms; the input is captured as the head receives it, whatever the architecture routes to it."""
    captured, was_training = [], model.training
    hook = head_module(model, task).register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    model.eval()
    labels = []
    try:
        # its own generator: a DataLoader's iterator draws a seed, here not from the global generator
        for x, y, *_ in DataLoader(dataset.eval() if hasattr(dataset, "eval") else dataset, batch_size=batch_size,
                                   shuffle=False, generator=torch.Generator()):
            model.head(task, model.features(x.to(device)))
            labels.append(y)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).cpu(), torch.cat(labels)


def normalised_logits(z: torch.Tensor, groups: list[list[int]], tau: float) -> torch.Tensor:
    """The repo's logit normalisation: z / (τ · mean_g ‖z_g‖₂) over the column groups g (z: B × columns, the
    columns of the groups in order); τ = 0: z unchanged."""
    if tau == 0:
        return z
    start, norms = 0, []
    for g in groups:
        norms.append(z[:, start:start + len(g)].norm(p=2, dim=1, keepdim=True) + 1e-7)
        start += len(g)
    return z / torch.cat(norms, dim=1).mean(dim=1, keepdim=True) / tau


class SLCAPlugin(Stateful, SupervisedPlugin):
    """Stage 1's local cross-entropy (class-IL), the class statistics and the classifier alignment (docstring)."""

    state_attrs = ("groups", "trained", "before_alignment")
    rebuilt_attrs = ("cfg", "gaussians", "current", "aligned_on")  # current: per experience; aligned_on: inspection

    def state_dict(self) -> dict:
        gaussians = {key: (g.mean, g.cov, g.experience, g.chol) for key, g in self.gaussians.items()}
        return super().state_dict() | {"gaussians": gaussians}

    def load_state_dict(self, state: dict, strategy=None) -> None:
        super().load_state_dict(state, strategy)
        self.gaussians = {}
        for key, (mean, cov, experience, chol) in state["gaussians"].items():
            g = ClassGaussian.__new__(ClassGaussian)  # the stored factor, not a new one: bit-identical draws
            g.mean, g.cov, g.experience, g.chol = mean, cov, experience, chol
            self.gaussians[key] = g

    def __init__(self, cfg: SLCAConfig):
        super().__init__()
        self.cfg = cfg
        self.gaussians: dict[tuple[int, int], ClassGaussian] = {}  # (head, class in the head) → its Gaussian
        self.groups: dict[int, list[list[int]]] = {}  # head → its classes, one group per experience that taught it
        self.trained, self.current, self.before_alignment = 0, None, None
        self.aligned_on: list[torch.Tensor] = []  # the last alignment's inputs, batch by batch (for inspection)

    def before_training_exp(self, strategy, **kwargs):
        strategy.optimizer.state.clear()  # the repo builds a new optimizer for every task (_stage1_training)
        if self.before_alignment is not None:  # the repo's fc.recall(): train on from the heads before alignment
            strategy.model.heads.load_state_dict(self.before_alignment)
        self.current = None
        if getattr(strategy, "scenario", "task-il") == "class-il":
            self.current = torch.tensor(sorted(int(c) for c in strategy.experience.dataset.targets.uniques))

    def after_forward(self, strategy, **kwargs):
        if self.current is None:  # task-IL: the head is the task's own, its cross-entropy already local
            return
        out = strategy.mb_output
        keep = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device)
        keep[self.current.to(out.device)] = True
        strategy.mb_output = out.masked_fill(~keep, float("-inf"))

    def after_training_exp(self, strategy, **kwargs):
        self.store_statistics(strategy)
        self.before_alignment = copy.deepcopy(strategy.model.heads.state_dict())
        self.trained += 1
        if self.trained > 1 and self.cfg.ca_epochs > 0:
            self.align(strategy.model, own_generator(strategy, "slca"), strategy.device)

    def store_statistics(self, strategy) -> None:
        """Each class of the experience: its Gaussian, keyed by (head, class); its head's groups grow by one."""
        exp = strategy.experience
        (task,) = set(exp.task_labels)  # class-IL: 0, the one head; task-IL: the experience's task
        feats, labels = head_inputs(strategy.model, exp.dataset, task, strategy.eval_mb_size, strategy.device)
        stats = class_gaussians(feats, labels, self.trained)
        self.gaussians |= {(task, c): g for c, g in stats.items()}
        self.groups.setdefault(task, []).append(sorted(stats))

    def draws(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One epoch's samples of every stored class, shuffled: (N × D features, N heads, N classes)."""
        n, x, heads, classes = self.cfg.samples_per_class, [], [], []
        for (head, c), g in sorted(self.gaussians.items()):
            x.append(g.sample(n, generator, scale=0.9 + 0.1 * (g.experience + 1) / self.trained))
            heads.append(torch.full((n,), head))
            classes.append(torch.full((n,), c))
        order = torch.randperm(n * len(x), generator=generator)
        return torch.cat(x)[order], torch.cat(heads)[order], torch.cat(classes)[order]

    def alignment_loss(self, model, x: torch.Tensor, heads: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Σ_h n_h / B · CE(normalised logits of head h over its seen classes, y) over the heads in the batch."""
        loss = x.new_zeros(())
        for h in heads.unique().tolist():
            rows, seen = heads == h, torch.tensor([c for g in self.groups[h] for c in g], device=x.device)
            z = head_module(model, h)(x[rows]).flatten(1)[:, seen]
            column = torch.full((int(seen.max()) + 1,), -1, device=x.device)
            column[seen] = torch.arange(len(seen), device=x.device)  # class → its column among the seen ones
            target = column[classes[rows]]
            ce = F.cross_entropy(normalised_logits(z, self.groups[h], self.cfg.logit_norm), target)
            loss = loss + rows.sum() / len(x) * ce
        return loss

    def align(self, model, generator: torch.Generator, device) -> None:
        """Train the heads alone on draws from the stored Gaussians (module docstring)."""
        params = list(model.heads.parameters())
        opt = torch.optim.SGD(params, lr=self.cfg.ca_lr, momentum=CA_MOMENTUM, weight_decay=CA_WEIGHT_DECAY)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.cfg.ca_epochs)
        dtype, batch, was_training = next(iter(params)).dtype, self.cfg.samples_per_class, model.training
        model.eval()
        self.aligned_on = []
        for _ in range(self.cfg.ca_epochs):
            x, heads, classes = self.draws(generator)
            x, heads, classes = x.to(device, dtype), heads.to(device), classes.to(device)
            for start in range(0, len(x), batch):
                part = slice(start, start + batch)
                self.aligned_on.append(x[part].detach().cpu())
                opt.zero_grad(set_to_none=True)
                self.alignment_loss(model, x[part], heads[part], classes[part]).backward()
                opt.step()
            schedule.step()
        opt.zero_grad(set_to_none=True)  # no alignment gradient is left for the run's optimizer to see
        model.train(was_training)


def slca_plugins(cfg: SLCAConfig, template_kwargs: dict) -> list:
    return [SLCAPlugin(cfg)]


# Its own builder, not register_plugins: it changes the optimizer's groups and, in class-IL, the loss's logits (a
# replayed sample of a past class would meet a -inf logit), so it does not combine with other strategies.
STRATEGIES.register("slca", config_cls=SLCAConfig, trains_past_heads=True, scenarios=("task-il", "class-il"),
                    slow_backbone=lambda cfg: cfg.backbone_lr_ratio, task_kinds=("binary", "multiclass"),
                    ptm=True)(template_with(slca_plugins, "slca", __name__))
