"""The four multi-task axes, each a `Registry` (name → builder): task sets, architectures, loss weightings,
schedules. Architecture and weighting are independent, as in LibMTL; any pair runs under any schedule.

What the rest of the code must know about an entry is declared in its registration (the meta classes below), never
read from its name: `@SCHEDULES.register("sequential", continual=True)`."""

from dataclasses import dataclass

from benchmark.registry import Registry


@dataclass(frozen=True)
class TaskSetMeta:
    task_names: tuple[str, ...] = ()  # in order; the batch plans single-task baselines from them without the data


@dataclass(frozen=True)
class ArchitectureMeta:
    aliases: tuple[str, ...] = ()  # other spellings the Python API takes (`architecture='cross_stitch'`)
    lazy_input: bool = True  # False: needs in_features (or a backbone) up front; no nn.LazyLinear first layers
    # The toolkit document's keyword that names this architecture's shared layers (MMoE's `expert_layers`).
    layers_keyword: str = ""
    # Runs with no shared layer (`shared_layers=0`): the backbone is the whole shared network and every task head
    # reads its pooled features (the multi-task experiments' conv trunk, the `mtl-conv` profile).
    no_shared_layers: bool = False


@dataclass(frozen=True)
class WeightingMeta:
    aliases: tuple[str, ...] = ()  # other spellings the Python API takes (`loss_weighting='grad-norm'`)
    # The config field holding fixed, user-given per-task weights (static's `weights`): the report's "weights"
    # column shows it; "" = the weights are computed (equal, learnt, or from the losses).
    fixed_weights: str = ""
    # Projects every conflicting pair of task gradients itself (PCGrad): a declared 'negative' task relation, which
    # projects one pair, would add nothing to it.
    projects_conflicts: bool = False


@dataclass(frozen=True)
class ScheduleMeta:
    # Trains the tasks one after another with an evaluation after each (a continual stream): R is T×T, so BWT,
    # forgetting, FWT and a continual-learning ACC are defined (benchmark.outputs.results.score_summary).
    continual: bool = False


TASK_SETS = Registry("task set", "benchmark.mtl.task_sets", meta_cls=TaskSetMeta)
ARCHITECTURES = Registry("architecture", "benchmark.mtl.architectures", meta_cls=ArchitectureMeta)
WEIGHTINGS = Registry("loss weighting", "benchmark.mtl.weightings", meta_cls=WeightingMeta)
SCHEDULES = Registry("schedule", "benchmark.mtl.schedules", meta_cls=ScheduleMeta)
