"""`MultiTaskModel`: the multi-task toolkit's API — architecture × loss weighting, a head per task, dict in / dict out.

    model = MultiTaskModel(tasks=["task1", "task2", "task3"], architecture="shared-bottom",
                           shared_layers=[128, 64], task_layers=[32, 16],
                           loss_weights={"task1": 1.0, "task2": 1.0, "task3": 0.5})
    predictions = model(x)                          # {task: B × the kind's output shape (reconstruction, dense: maps)}
    loss = model.compute_loss(predictions, labels)  # labels = {task: targets}; the weighted scalar
    model.predict(x)                                # {task: class indices, or reconstructed images}

Tasks are names (binary classification, 2 outputs) or `TaskSpec`s (kind, n_outputs, loss, primary metric; a dense
kind's head decodes its vector into a map first: benchmark/mtl/task_heads.py); left out, they are the names of a
`task_layers` or `loss_weights` dict, else the toolkit document's task1, task2, task3.
Input: a feature vector of width `in_features`, or of the width the first forward sees when neither `in_features`
nor `backbone` is given (the first layers are nn.LazyLinear: an optimizer built before that forward trains them,
`materialize(x)` sizes them without training); or an image through a registered backbone (`backbone='small_cnn'`
or 'vit_tiny', with `input_shape=(C, H, W)`); `pooling` = how its feature map becomes the trunk's input vector
('mean' over positions, or 'flatten' to keep the layout; `TokenBackbone`).
Layers: `shared_layers` (widths, or a count of 64-wide layers; `num_layers` = the count; 0 = none, shared-bottom
only: the heads read the backbone's pooled features, e.g. a conv stack's flattened map), `task_layers` (one list
or {task: list}), `activation` ('relu', 'gelu', 'tanh', ...; after every hidden layer), `dropout`/`dropout_at`;
An architecture's or weighting's own knobs by the toolkit's keywords, which its config declares (benchmark/mtl/
keywords.py): MMoE `num_experts`, `expert_layers` (= its shared layers), `gate_layers`; cross-stitch
`cross_stitch_positions` (1-based layers followed by a unit); uncertainty `init_weights`; or all of them at once
as `architecture_args` / `weighting_args` (the config dataclass, or a dict of its fields).
`loss_weights` = static weighting; `loss_weighting` = a registered weighting by name or declared alias ('equal',
'static', 'uncertainty', 'gradnorm' or 'grad-norm', 'dwa', 'pcgrad').
`compute_loss` is exact for the loss-level weightings; GradNorm's weight update and PCGrad's gradient surgery happen
in `backward(losses)`, which the trainer calls (for PCGrad, `compute_loss` is the plain sum).
`task_lrs` = {task: lr} for that task's head (`param_groups(lr)` builds the optimizer's groups); `task_relations` =
{(task_a, task_b): 'positive' | 'negative' | 'neutral'}: a 'negative' pair's conflicting gradients on the shared
parameters are projected apart in `backward` (benchmark/mtl/gradients.py); every pair's measured gradient cosine is
reported beside its declared relation.
Options of one architecture or weighting given to another are an error naming their owner (except `num_experts`,
which, like the document's `--experts`, any architecture takes and only MMoE uses); an unknown keyword is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from avalanche.models import MultiTaskModule
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import ACTIVATIONS, DROPOUT_AT, POOLING, TokenBackbone
from benchmark.mtl.architectures.base import ArchSpec
from benchmark.mtl.gradients import add_flat, relation_correction
from benchmark.mtl.keywords import check_known, resolve, shared_layers_of, with_keywords
from benchmark.mtl.multi_head import MultiHeadMixin
from benchmark.mtl.options import entry_config, head_widths, per_task_values, relation_pairs, shared_widths, task_specs
from benchmark.mtl.registries import ARCHITECTURES, WEIGHTINGS
from benchmark.mtl.task_heads import task_head
from benchmark.registry import BACKBONES
from benchmark.tasks import kind_of

BY_NAME = object()  # `model(x)`, no task labels: the toolkit's {task name: output}


class MultiTaskModel(MultiHeadMixin, MultiTaskModule):
    """The toolkit's model, and a `MultiHeadModel` (benchmark/mtl/multi_head.py): every continual strategy runs on
    it (`hatswap run --architecture mmoe`)."""

    def __init__(self, tasks: Sequence | None = None, architecture: str = "shared-bottom", shared_layers=None,
                 task_layers: Sequence[int] | Mapping[str, Sequence[int]] = (32,), loss_weights: Mapping | None = None,
                 loss_weighting: str | None = None, dropout: float = 0.0, dropout_at: str = "each",
                 backbone: str | None = None, backbone_args=None, in_features: int | None = None,
                 input_shape: tuple[int, int, int] | None = None, architecture_args=None, weighting_args=None,
                 pooling: str = "mean", *, activation: str = "relu", num_layers: int | None = None,
                 task_relations: Mapping | None = None, task_lrs: Mapping | None = None, **keywords):
        """keywords: the architectures' and weightings' own (num_experts, expert_layers, gate_layers,
        cross_stitch_positions, init_weights, ...: benchmark/mtl/keywords.py)."""
        super().__init__()
        check_known(keywords)
        self.tasks = task_specs(tasks, task_layers, loss_weights)
        names = tuple(t.name for t in self.tasks)
        self.task_lrs = per_task_values(task_lrs, names, "task_lrs")
        self.task_relations = relation_pairs(task_relations, names)  # 'negative' pairs act in backward
        if not 0 <= dropout < 1 or dropout_at not in DROPOUT_AT:
            raise UserError(f"dropout must be in [0, 1) and dropout_at one of {DROPOUT_AT}; got {dropout}, "
                            f"{dropout_at!r}")
        if pooling not in POOLING or activation not in ACTIVATIONS:
            raise UserError(f"pooling must be one of {POOLING} and activation one of {sorted(ACTIVATIONS)}; got "
                            f"{pooling!r}, {activation!r}")
        self.make_backbone, self.backbone_identity = self._backbone_factory(backbone, backbone_args, in_features,
                                                                            input_shape, pooling)
        per_task = head_widths(task_layers, names)
        arch = resolve(ARCHITECTURES, architecture)
        spec = ArchSpec(names, shared_widths(shared_layers_of(arch, shared_layers, keywords), num_layers), dropout,
                        dropout_at, activation)
        if not spec.shared_layers and not arch.meta.no_shared_layers:
            takes = [n for n in ARCHITECTURES.names() if ARCHITECTURES.get(n).meta.no_shared_layers]
            raise UserError(f"shared_layers=0 (no shared layer: the backbone is the shared network) is for {takes}; "
                            f"architecture {arch.name!r} needs at least one shared layer")
        self.architecture_name = arch.name
        self.arch = arch.build(with_keywords(arch, architecture_args, keywords, names), spec, self.make_backbone)
        # a map-reading kind's head decodes the vector into a map first (benchmark/mtl/task_heads.py); out_tokens:
        # how many token vectors the architecture flattens into each task's vector (MTAN: its attended map)
        tokens = getattr(self.arch, "out_tokens", 1)
        self.heads = nn.ModuleDict({t.name: task_head(t, self.arch.out_dim, per_task[t.name], dropout, dropout_at,
                                                      activation, tokens) for t in self.tasks})
        self.contract_view()
        weighting = self._weighting_entry(loss_weights, loss_weighting)
        self.weighting_name = weighting.name
        self.weighting = weighting.build(with_keywords(weighting, self._weighting_args(weighting, loss_weights,
                                                                                       weighting_args),
                                                       keywords, names), names)
        self.negative_pairs = [pair for pair, relation in self.task_relations.items() if relation == "negative"]
        if self.negative_pairs and weighting.meta.projects_conflicts:
            raise UserError(f"{weighting.name} already projects every conflicting pair of tasks; a 'negative' task "
                            f"relation adds nothing to it: declare it with another weighting, or drop it")

    @staticmethod
    def _weighting_entry(loss_weights, loss_weighting):
        """The toolkit's `loss_weights` dict is the weighting with fixed weights (`fixed_weights`: static)."""
        if loss_weights is None:
            return resolve(WEIGHTINGS, loss_weighting or "equal")
        fixed = [n for n in WEIGHTINGS.names() if WEIGHTINGS.get(n).meta.fixed_weights]
        if loss_weighting is not None and resolve(WEIGHTINGS, loss_weighting).name not in fixed:
            raise UserError(f"give loss_weights (static weighting) or loss_weighting={loss_weighting!r}, not both")
        return resolve(WEIGHTINGS, loss_weighting or fixed[0])

    @staticmethod
    def _weighting_args(entry, loss_weights, args):
        if loss_weights is None:
            return args
        return {entry.meta.fixed_weights: ",".join(f"{k}={v}" for k, v in loss_weights.items())}

    @staticmethod
    def _backbone_factory(name, args, in_features, input_shape, pooling):
        if name is None:
            if in_features is not None and (isinstance(in_features, bool) or int(in_features) < 1):
                raise UserError(f"in_features must be a positive integer, got {in_features!r}")
            # in_features None: the input width is read at the first forward (nn.LazyLinear first layers)
            width = None if in_features is None else int(in_features)
            return (lambda: TokenBackbone(None, width)), {"name": "none (vector input)", "weights": "n/a"}
        if input_shape is None or len(input_shape) != 3:
            raise UserError(f"backbone {name!r} needs input_shape=(C, H, W), got {input_shape}")
        entry = BACKBONES.get(name)
        cfg = entry_config(entry, args)
        c, h, _ = input_shape

        probe = entry.build(cfg, image_size=h, in_chans=c)
        with torch.no_grad():  # the token count N, which 'flatten' pooling sizes the trunk's first layer by
            n_tokens = TokenBackbone(probe.module, probe.width)(torch.zeros(1, *input_shape)).shape[1]

        def make() -> TokenBackbone:
            built = entry.build(cfg, image_size=h, in_chans=c)
            return TokenBackbone(built.module, built.width, n_tokens, pooling)

        return make, probe.identity | {"name": name}

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the parameters (float64 under --dtype float64, benchmark.runtime.device): inputs are cast to
        it."""
        return next(self.heads.parameters()).dtype

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, x: torch.Tensor, task_labels=BY_NAME):
        """`model(x)` → {task name: output, B × the kind's shape}; `model(x, task_labels)` → the model contract's
        routed B × max(head_dims) (None: {task id: B × head_dims[t]})."""
        if task_labels is not BY_NAME:
            return self.route(x, task_labels)
        reps = self.arch(x.to(self.compute_dtype))  # inputs in the dtype the model was built in (--dtype)
        return {t.name: kind_of(t).unpack_output(self.heads[t.name](reps[t.name]), t) for t in self.tasks}

    def task_losses(self, predictions: Mapping, labels: Mapping) -> dict[str, torch.Tensor]:
        """Loss of every task present in `labels` (a schedule's active subset may leave some out)."""
        if unknown := [t for t in labels if t not in self.heads]:
            raise UserError(f"labels for unknown task(s) {unknown}; the model's tasks are {self.task_names}")
        specs = {t.name: t for t in self.tasks}
        # a kind reads flattened outputs (B × output_len); the toolkit's predictions carry the kind's shape
        return {t: kind_of(specs[t]).loss(predictions[t].flatten(1), y, specs[t]) for t, y in labels.items()}

    def compute_loss(self, predictions: Mapping, labels: Mapping) -> torch.Tensor:
        """The weighted task losses, plus the architecture's own regulariser if it has one."""
        loss = self.weighting.combine(self.task_losses(predictions, labels))
        penalty = self.arch.penalty()
        return loss if penalty is None else loss + penalty

    def backward(self, losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The weighting's backward pass (PCGrad / GradNorm need the shared parameters), the declared 'negative'
        pairs' projection on the shared gradients, then the architecture's regulariser's (added to the gradients,
        outside the weighting) → the weights used."""
        shared, correction = self.arch.shared_parameters(), None
        if self.negative_pairs and shared and len(losses) > 1:  # before the weighting's backward frees the graph
            w = self.weighting.weights(dict(losses))
            correction = relation_correction({t: w[t] * v for t, v in losses.items()}, shared, self.negative_pairs)
        weights = self.weighting.backward(dict(losses), shared, self.arch.last_shared_parameters())
        if correction is not None:
            add_flat(shared, correction)
        if (penalty := self.arch.penalty()) is not None:
            penalty.backward()
        return weights

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups: each head of a task in `task_lrs` at that task's lr; every other parameter
        (backbone, shared layers, the architecture's task-specific parts such as cross-stitch columns or MTAN masks,
        the other heads, the weighting's own parameters) at `lr`. One group when no task has its own lr."""
        own = {t: list(self.heads[t].parameters()) for t in self.task_lrs}
        taken = {id(p) for ps in own.values() for p in ps}
        rest = [p for p in self.parameters() if id(p) not in taken]
        return [{"params": rest, "lr": lr}] + [{"params": ps, "lr": self.task_lrs[t], "task": t}
                                                for t, ps in own.items()]

    @torch.no_grad()
    def materialize(self, x: torch.Tensor) -> MultiTaskModel:
        """One forward pass without gradients: a model sized lazily (neither in_features nor backbone given) gets
        its real parameters, as the first training step would give them. Needed only to count or load parameters
        before training; an optimizer built before the first forward already trains them (torch materialises a
        lazy layer's UninitializedParameter in place: the optimizer holds the same Parameter objects)."""
        was_training = self.training
        self.eval()
        try:
            self(x)
        finally:
            self.train(was_training)
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        was_training = self.training
        self.eval()
        try:
            out = self(x)
        finally:
            self.train(was_training)
        return {t.name: kind_of(t).predict(out[t.name].flatten(1), t) for t in self.tasks}
