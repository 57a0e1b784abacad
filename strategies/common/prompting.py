"""What the prompt methods share (L2P, DualPrompt, CODA-Prompt): a frozen pretrained ViT, a query from it, learnt
prompts chosen by that query and inserted into the same ViT's token sequence, and a classifier on the result.

    query     q(x) = the backbone's class token after its final norm, WITHOUT prompts, no gradient: B×D
              (L2P's and DualPrompt's `cls_features` from the frozen "original model"; CODA-Prompt's too)
    features  f(x) = prompter(backbone, x, q(x), task): B×D, a prompted forward of the same frozen backbone
              (prompt-tuning: benchmark/models/backbone.py `forward_with_prompts`; prefix-tuning:
              benchmark/models/prompting.py `forward_with_prefixes`), and the method's surrogate loss (a scalar)
    output    heads(shared(f(x))): the network's own shared layers and heads read f(x) where they read the
              backbone's vector before

`PromptedNet` is that network. It meets the model contract (benchmark/models/contract.py), so the harness trains
and evaluates it as any other model: the routed forward, class-IL's one head, task-IL by masking, the budget. What
trains: the prompter's parameters (prompts, keys, attention vectors), the shared layers and the heads. The backbone
is frozen (requires_grad False, eval mode, no .grad ever) whatever the run said; a prompt strategy declares
`prompts_backbone=True` (StrategyMeta), so `--backbone-mode` other than frozen, and an `--architecture` without the
Hat Swap network's shared layers, are refused at config time, and the feature cache is not used
(benchmark/harness/feature_cache.py): prompts need the images every step. The shared
layers train with the heads, as part of the classifier: the papers' classifier is one linear layer on f(x), which
is `--hidden` empty here (`--hidden` given no width); with the default `--hidden 128` the classifier is that MLP.

`task`: the experience being trained (its index in the stream, set by `PromptPlugin` before each experience: the
task identity DualPrompt and CODA-Prompt train with, also in class-IL where every task label is 0); None at
evaluation, where the prompts are chosen by the query alone.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import MultiTaskModule
from torch import nn

from benchmark.errors import UserError
from benchmark.models.backbone import ViTBackbone, require_tokens
from benchmark.models.contract import BackboneModes, MultiHeadModel
from benchmark.models.hatswap_net import common_attribute
from benchmark.runtime.randomness import derived_seed
from benchmark.runtime.state import Stateful


class Prompter(nn.Module):
    """A prompt method's own parameters and its prompted forward. Subclasses implement `prompted`; `start_task` is
    told each experience's index before it trains (CODA-Prompt freezes the earlier components there)."""

    def prompted(self, backbone: ViTBackbone, x: torch.Tensor, query: torch.Tensor,
                 task: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """images x B×C×H×W, query B×D (frozen, no gradient), task (training) or None (evaluation) →
        (features B×D for the shared layers, the surrogate loss: a scalar added to the training loss)."""
        raise NotImplementedError

    def forward(self, backbone, x, query, task):
        return self.prompted(backbone, x, query, task)

    def start_task(self, task: int) -> None:
        """Called before experience `task` trains."""


def prompt_generator(name: str) -> torch.Generator:
    """The generator a prompt method draws its initial prompts and keys from: seeded from the run seed (torch's
    initial seed, which the harness sets before building the model) and the method's name, so the global stream of
    random numbers (shuffling, dropout) is the one every other strategy of the same seed sees."""
    return torch.Generator().manual_seed(derived_seed(torch.initial_seed(), "strategy", name))


def prompt_backbone(model: MultiHeadModel, who: str) -> ViTBackbone:
    """The model's backbone if prompts can enter it: a ViT (its token sequence) run on images (not the feature
    cache's identity), under heads that read vectors; else one UserError naming `who` and the fix."""
    if model.feature_form != "vector":
        raise UserError(f"{who} gives its heads a feature vector; the tasks' heads read {model.feature_form}s (the "
                        f"dense suite): use a classification stream")
    if getattr(model.backbone, "feature_layout", None) is None:
        raise UserError(f"{who} runs the backbone on images with its prompts, not on cached features "
                        f"({type(model.backbone).__name__}); pass --no-feature-cache")
    return require_tokens(model.backbone, who)


class PromptedNet(BackboneModes, MultiTaskModule):
    """The base network's shared layers and heads (the very modules) on `prompter`'s prompted features of its frozen
    backbone (module docstring). `surrogate`: the latest forward's surrogate loss; `train_task`: the experience
    being trained."""

    autocast_dtype: torch.dtype | None = None

    def __init__(self, base: MultiHeadModel, prompter: Prompter, who: str):
        super().__init__()
        self.backbone = prompt_backbone(base, who).requires_grad_(False)
        self.shared, self.heads, self.prompter = base.shared, base.heads, prompter
        self.head_dims, self.tasks = list(base.head_dims), list(base.tasks)
        self.frozen_backbone, self.feature_form, self.pad = True, "vector", common_attribute(base.tasks, "pad")
        self.autocast_dtype = base.autocast_dtype
        self.train_task, self.surrogate = 0, None
        self.backbone.eval()

    @property
    def compute_dtype(self) -> torch.dtype:
        return next(self.heads.parameters()).dtype

    @torch.no_grad()
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """B×D: the class token of the backbone without prompts, after its final norm."""
        return self.backbone.forward_features(x)[:, 0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.compute_dtype)
        with self._autocast(x):
            feats, self.surrogate = self.prompter(self.backbone, x, self.query(x),
                                                  self.train_task if self.training else None)
            return self.shared(feats.to(self.compute_dtype)).to(self.compute_dtype)

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        with self._autocast(feats):
            return self.heads[task](feats).to(self.compute_dtype).flatten(1)

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor | dict[int, torch.Tensor]:
        return self.routed(x, task_labels, self.pad)

    def with_backbone(self, backbone: nn.Module):
        raise UserError("a prompt method runs its backbone on images every step; it cannot train on cached "
                        "features (pass --no-feature-cache)")


def prompt_optimizer(optimizer: torch.optim.Optimizer, net: PromptedNet) -> torch.optim.Optimizer:
    """The caller's optimizer (built over the base network) rebuilt over what trains in `net`: same class, the
    settings (lr, weight decay, betas) of its last group, the one of the non-backbone parameters
    (benchmark/models/backbone_training.py); prompts, keys, shared layers and heads in one group."""
    settings = {k: v for k, v in optimizer.param_groups[-1].items() if k != "params"}
    return type(optimizer)([{**settings, "params": [p for p in net.parameters() if p.requires_grad]}])


class PromptPlugin(Stateful, SupervisedPlugin):
    """Tells the network and its prompter the experience about to train; adds the surrogate loss to the training
    loss; in class-IL with `train_mask`, sets the logits of the classes outside the current experience to −inf
    before the loss (L2P's and DualPrompt's `train_mask`: the softmax competes within the experience's classes)."""

    rebuilt_attrs = ("train_mask", "keep")  # keep: set at every experience's start

    def __init__(self, train_mask: bool = True):
        super().__init__()
        self.train_mask, self.keep = train_mask, None

    def before_training_exp(self, strategy, **kwargs):
        # A fresh optimizer state per task, as the authors build a new optimizer for each (l2p-/dualprompt-pytorch
        # engine.py with `reinit_optimizer` True; CODA-Prompt's learner): Adam moments carried over would move the
        # past tasks' prompts, keys and masked head rows, whose gradient is now zero.
        strategy.optimizer.state.clear()
        task = strategy.experience.current_experience
        strategy.model.train_task = task
        strategy.model.prompter.start_task(task)
        self.keep = None
        if self.train_mask and getattr(strategy, "scenario", "task-il") == "class-il":
            classes = torch.tensor(sorted(int(c) for c in strategy.experience.dataset.targets.uniques))
            self.keep = torch.zeros(strategy.model.head_dims[0], dtype=torch.bool)
            self.keep[classes] = True

    def after_forward(self, strategy, **kwargs):
        if self.keep is not None:
            keep = self.keep.to(strategy.mb_output.device)
            strategy.mb_output = strategy.mb_output.masked_fill(~keep, float("-inf"))

    def before_backward(self, strategy, **kwargs):
        if strategy.model.surrogate is not None:
            strategy.loss = strategy.loss + strategy.model.surrogate


def prompt_template(prompter: Prompter, who: str, plugins, model: MultiHeadModel, optimizer: torch.optim.Optimizer,
                    train_mask: bool = True, **template_kwargs):
    """A prompt strategy's builder body: Avalanche's SupervisedTemplate over `PromptedNet(model, prompter)`, its
    optimizer rebuilt over what trains, the harness's plugins first, then `PromptPlugin`."""
    from avalanche.training.templates import SupervisedTemplate

    net = PromptedNet(model, prompter, who)
    return SupervisedTemplate(model=net, optimizer=prompt_optimizer(optimizer, net),
                              plugins=[*plugins, PromptPlugin(train_mask)], **template_kwargs)
