"""`MultiTaskModel`: the multi-task toolkit's API — architecture × loss weighting, a head per task, dict in / dict out.

    model = MultiTaskModel(tasks=["task1", "task2", "task3"], architecture="shared-bottom", in_features=20,
                           shared_layers=[128, 64], task_layers=[32, 16],
                           loss_weights={"task1": 1.0, "task2": 1.0, "task3": 0.5})
    predictions = model(x)                          # {task: B×n_outputs logits, or B×C×H×W for reconstruction}
    loss = model.compute_loss(predictions, labels)  # labels = {task: targets}; the weighted scalar
    model.predict(x)                                # {task: class indices, or reconstructed images}

Tasks are names (binary classification, 2 outputs) or `TaskSpec`s (kind, n_outputs, loss, primary metric).
Input: a feature vector (`in_features`) or an image through a registered backbone (`backbone='small_cnn'` or
'vit_tiny', with `input_shape=(C, H, W)`); `pooling` = how its feature map becomes the trunk's input vector
('mean' over positions, or 'flatten' to keep the layout; `TokenBackbone`). `loss_weights` = static weighting;
`loss_weighting` = a registered weighting by name ('equal', 'static', 'uncertainty', 'gradnorm', 'dwa', 'pcgrad').
`compute_loss` is exact for the loss-level weightings; GradNorm's weight update and PCGrad's gradient surgery happen
in `backward(losses)`, which the trainer calls (for PCGrad, `compute_loss` is the plain sum).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import DROPOUT_AT, POOLING, TokenBackbone, mlp
from benchmark.mtl.architectures.base import ArchSpec
from benchmark.mtl.registries import ARCHITECTURES, WEIGHTINGS
from benchmark.registry import BACKBONES
from benchmark.tasks import TaskSpec, kind_of

ALIASES = {"grad-norm": "gradnorm", "shared_bottom": "shared-bottom", "cross_stitch": "cross-stitch"}


def _task_specs(tasks) -> list[TaskSpec]:
    specs = [t if isinstance(t, TaskSpec) else TaskSpec(str(t), kind="binary") for t in tasks]
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names) or any(not n or "." in n for n in names):
        raise UserError(f"tasks must be distinct non-empty names without '.', got {names}")
    return specs


def _widths(layers, what: str) -> tuple[int, ...]:
    widths = tuple([64] * layers) if isinstance(layers, int) else tuple(int(w) for w in layers)
    if not widths or any(w < 1 for w in widths):
        raise UserError(f"{what} needs at least one positive width (a list like [128, 64], or a count), got {layers}")
    return widths


def _entry_config(entry, given):
    """An entry's own config: the dataclass given, a dict of its fields, or the defaults."""
    if entry.config_cls is None or dataclasses.is_dataclass(given):
        return given
    try:
        return entry.config_cls(**(given or {}))
    except TypeError as e:
        raise UserError(f"bad options for {entry.name}: {e}") from None


class MultiTaskModel(nn.Module):
    def __init__(self, tasks: Sequence, architecture: str = "shared-bottom", shared_layers=(128, 64),
                 task_layers: Sequence[int] | Mapping[str, Sequence[int]] = (32,), loss_weights: Mapping | None = None,
                 loss_weighting: str | None = None, num_experts: int = 4, dropout: float = 0.0,
                 dropout_at: str = "each", backbone: str | None = None, backbone_args=None,
                 in_features: int | None = None, input_shape: tuple[int, int, int] | None = None,
                 architecture_args=None, weighting_args=None, pooling: str = "mean"):
        super().__init__()
        self.tasks = _task_specs(tasks)
        names = tuple(t.name for t in self.tasks)
        if not 0 <= dropout < 1 or dropout_at not in DROPOUT_AT:
            raise UserError(f"dropout must be in [0, 1) and dropout_at one of {DROPOUT_AT}; got {dropout}, "
                            f"{dropout_at!r}")
        if pooling not in POOLING:
            raise UserError(f"pooling must be one of {POOLING}, got {pooling!r}")
        self.make_backbone, self.backbone_identity = self._backbone_factory(backbone, backbone_args, in_features,
                                                                            input_shape, pooling)
        spec = ArchSpec(names, _widths(shared_layers, "shared_layers"), dropout, dropout_at, num_experts)
        arch = ARCHITECTURES.get(ALIASES.get(architecture, architecture))
        self.architecture_name = arch.name
        self.arch = arch.build(_entry_config(arch, architecture_args), spec, self.make_backbone)
        per_task = task_layers if isinstance(task_layers, Mapping) else dict.fromkeys(names, task_layers)
        if missing := [n for n in names if n not in per_task]:
            raise UserError(f"task_layers has no entry for task(s) {missing}")
        # Heads get dropout only in 'each' mode ("after each layer"); 'last' means one dropout layer, the trunk's.
        self.heads = nn.ModuleDict({t.name: nn.Sequential(
            mlp(self.arch.out_dim, tuple(per_task[t.name]), dropout, "each" if dropout_at == "each" else "none"),
            kind_of(t).make_head(t, ([self.arch.out_dim, *per_task[t.name]])[-1])) for t in self.tasks})
        self.weighting_name, self.weighting = self._weighting(loss_weights, loss_weighting, weighting_args, names)

    @staticmethod
    def _backbone_factory(name, args, in_features, input_shape, pooling):
        if name is None:
            if not in_features:
                raise UserError("MultiTaskModel needs in_features=F for vector inputs, or backbone='small_cnn' / "
                                "'vit_tiny' with input_shape=(C, H, W) for images")
            return (lambda: TokenBackbone(None, int(in_features))), {"name": "none (vector input)",
                                                                       "weights": "n/a"}
        if input_shape is None or len(input_shape) != 3:
            raise UserError(f"backbone {name!r} needs input_shape=(C, H, W), got {input_shape}")
        entry = BACKBONES.get(name)
        cfg = _entry_config(entry, args)
        c, h, _ = input_shape

        probe, dim, identity = entry.build(cfg, image_size=h, in_chans=c)
        with torch.no_grad():  # the token count N, which 'flatten' pooling sizes the trunk's first layer by
            n_tokens = TokenBackbone(probe, dim)(torch.zeros(1, *input_shape)).shape[1]

        def make() -> TokenBackbone:
            body, dim, _ = entry.build(cfg, image_size=h, in_chans=c)
            return TokenBackbone(body, dim, n_tokens, pooling)

        return make, identity | {"name": name}

    @staticmethod
    def _weighting(loss_weights, loss_weighting, args, names):
        if loss_weights is not None and loss_weighting not in (None, "static"):
            raise UserError(f"give loss_weights (static weighting) or loss_weighting={loss_weighting!r}, not both")
        if loss_weights is not None:
            name = "static"
            args = {"weights": ",".join(f"{k}={v}" for k, v in loss_weights.items())}
        else:
            name = ALIASES.get(loss_weighting or "equal", loss_weighting or "equal")
        entry = WEIGHTINGS.get(name)
        return name, entry.build(_entry_config(entry, args), names)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        reps = self.arch(x)
        out = {}
        for t in self.tasks:
            y = self.heads[t.name](reps[t.name])
            out[t.name] = kind_of(t).unflatten(y, t)
        return out

    def task_losses(self, predictions: Mapping, labels: Mapping) -> dict[str, torch.Tensor]:
        """Loss of every task present in `labels` (a schedule's active subset may leave some out)."""
        if unknown := [t for t in labels if t not in self.heads]:
            raise UserError(f"labels for unknown task(s) {unknown}; the model's tasks are {self.task_names}")
        specs = {t.name: t for t in self.tasks}
        return {t: kind_of(specs[t]).loss(predictions[t], y, specs[t]) for t, y in labels.items()}

    def compute_loss(self, predictions: Mapping, labels: Mapping) -> torch.Tensor:
        """The weighted task losses, plus the architecture's own regulariser if it has one."""
        loss = self.weighting.combine(self.task_losses(predictions, labels))
        penalty = self.arch.penalty()
        return loss if penalty is None else loss + penalty

    def backward(self, losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The weighting's backward pass (PCGrad / GradNorm need the shared parameters), then the architecture's
        regulariser's (added to the gradients, outside the weighting) → the weights used."""
        weights = self.weighting.backward(dict(losses), self.arch.shared_parameters(),
                                          self.arch.last_shared_parameters())
        if (penalty := self.arch.penalty()) is not None:
            penalty.backward()
        return weights

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        was_training = self.training
        self.eval()
        try:
            out = self(x)
        finally:
            self.train(was_training)
        return {t.name: kind_of(t).predict(out[t.name], t) for t in self.tasks}
