"""`MultiTaskModel` as a `MultiHeadModel` (benchmark/models/contract.py): what every continual strategy reads.

    backbone   the architecture's token backbone (images → B×N×D tokens; benchmark/models/layers.py's
               TokenBackbone), or an nn.ModuleList of them where it has one per column (progressive)
    shared     the architecture as one module: x → B×T×w, column t = task t's representation (MMoE: its gate's mix
               of the experts; cross-stitch: its column) — LwF's hook on `shared` captures it
    heads      the toolkit's heads, one per task in task-id order (an nn.ModuleDict keyed by task name)
    head(t, f) task t's head on column t of f, flattened: B × head_dims[t]

`forward(x, task_labels)` routes every sample through its own task's head (benchmark/models/trunk.py's `route`,
padded with the kinds' `pad`), as the Hat Swap network does; `model(x)` alone stays the toolkit's {name: output}.
`feature_form` is "token map": the architecture reads the backbone's tokens itself, so a frozen backbone runs every
step (the feature cache holds pooled vectors only).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.contract import BackboneModes
from benchmark.models.hatswap_net import common_attribute
from benchmark.models.layers import TokenBackbone


class Representations(nn.Module):
    """`shared`: the architecture's {task: B×w} as one B×T×w tensor, in task-id order."""

    def __init__(self, arch: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.arch, self.names = arch, names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reps = self.arch(x)
        return torch.stack([reps[n] for n in self.names], dim=1)


def token_backbones(arch: nn.Module) -> list[tuple[str, TokenBackbone]]:
    """(attribute name, module) of the architecture's token backbones that are its direct children."""
    return [(n, m) for n, m in arch.named_children() if isinstance(m, TokenBackbone)]


class MultiHeadMixin(BackboneModes):
    """The model contract on top of `MultiTaskModel`'s `arch`, `heads` and `tasks` (a TaskSpec list)."""

    # Set by benchmark.runtime.device on CUDA (bf16); every contract entry point returns the compute dtype (as
    # HatSwapNet).
    autocast_dtype: torch.dtype | None = None
    frozen_backbone: bool = False
    feature_form = "token map"

    def contract_view(self) -> None:
        """Build `shared` (called once the architecture exists): held outside the module tree, so the parameters,
        their order and the state dict are the toolkit's."""
        self.__dict__["shared_view"] = Representations(self.arch, tuple(t.name for t in self.tasks))

    @property
    def shared(self) -> nn.Module:
        return self.__dict__["shared_view"]

    @property
    def backbone(self) -> nn.Module:
        found = [m for m in self.arch.modules() if isinstance(m, TokenBackbone)]
        return found[0] if len(found) == 1 else nn.ModuleList(found)

    @property
    def head_dims(self) -> list[int]:
        return [t.n_outputs for t in self.tasks]

    def freeze_backbone(self) -> None:
        """--backbone-mode frozen: the backbone gets no gradient and stays in eval mode."""
        self.frozen_backbone = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B×T×w: every task's representation (the backbone runs inside the architecture)."""
        with self._autocast(x):
            return self.shared(x.to(self.compute_dtype)).to(self.compute_dtype)

    def head(self, task: int, feats: torch.Tensor) -> torch.Tensor:
        with self._autocast(feats):
            return self.heads[self.tasks[task].name](feats[:, task]).to(self.compute_dtype).flatten(1)

    def route(self, x: torch.Tensor, task_labels) -> torch.Tensor | dict[int, torch.Tensor]:
        """The contract's forward: B × max(head_dims) routed by task label, or {task id: output} for None."""
        return self.routed(x, task_labels, common_attribute(self.tasks, "pad"))

    def with_backbone(self, backbone: nn.Module):
        """The same architecture layers and heads (the very modules) behind `backbone`, which takes the token
        backbone's place, so it must give tokens and pool as it does (torch.compile's wrapper of it does)."""
        children = token_backbones(self.arch)
        if len(children) != 1:
            raise UserError(f"architecture {self.architecture_name!r} has {len(children)} backbones of its own; "
                            f"it cannot run behind another one (use --backbone-mode finetune, no --compile)")
        view, arch = copy.copy(self), copy.copy(self.arch)
        arch._modules = self.arch._modules.copy()
        arch._modules[children[0][0]] = backbone
        view._modules = self._modules.copy()
        view._modules["arch"] = arch
        view.contract_view()
        return view
