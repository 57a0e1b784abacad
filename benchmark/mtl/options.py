"""The multi-task toolkit's keywords of `MultiTaskModel` (docs/multi-task-api.md), checked and turned into what the
registries take: which tasks, the shared widths, an entry's own config, the per-task dictionaries (learning rates,
relations); the keywords that set an architecture's or weighting's own knobs: benchmark/mtl/keywords.py. Every bad
value is one UserError naming the keyword."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from benchmark.errors import UserError
from benchmark.tasks import TaskSpec

# The tasks of the toolkit document's examples: a model whose call names no task (`MultiTaskModel(architecture=
# 'mmoe', num_experts=4, ...)`) gets these, three binary tasks, as the document's running `tasks` list.
DOCUMENT_TASKS = ("task1", "task2", "task3")
RELATIONS = ("positive", "negative", "neutral")
DEFAULT_SHARED = (128, 64)
COUNT_WIDTH = 64  # the width of each layer when only a count is given (`shared_layers=3`, `num_layers=3`)


def task_specs(tasks, task_layers, loss_weights) -> list[TaskSpec]:
    """tasks as given (names or TaskSpecs); None: the names `task_layers` or `loss_weights` (dicts over every task)
    give, else DOCUMENT_TASKS."""
    if tasks is None:
        named = [list(d) for d in (task_layers, loss_weights) if isinstance(d, Mapping)]
        if len(named) == 2 and set(named[0]) != set(named[1]):
            raise UserError(f"task_layers names tasks {named[0]} but loss_weights {named[1]}; pass tasks=[...]")
        tasks = named[0] if named else DOCUMENT_TASKS
    if isinstance(tasks, str | TaskSpec):
        raise UserError(f"tasks must be a list of task names or TaskSpecs, got {tasks!r}")
    specs = [t if isinstance(t, TaskSpec) else TaskSpec(str(t), kind="binary") for t in tasks]
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names) or any(not n or "." in n for n in names):
        raise UserError(f"tasks must be distinct non-empty names without '.', got {names}")
    return specs


def widths(layers, what: str) -> tuple[int, ...]:
    """A list of widths, or a count of COUNT_WIDTH-wide layers."""
    out = tuple([COUNT_WIDTH] * layers) if isinstance(layers, int) else tuple(int(w) for w in layers)
    if not out or any(w < 1 for w in out):
        raise UserError(f"{what} needs at least one positive width (a list like [128, 64], or a count), got {layers}")
    return out


def shared_widths(shared_layers, num_layers) -> tuple[int, ...]:
    """The trunk's hidden widths (per column for cross-stitch / progressive, per expert for MMoE) from
    `shared_layers` (or the architecture's own keyword for them, benchmark.mtl.keywords) and `num_layers` (a count;
    the toolkit's cross-stitch knob). `shared_layers=0` (or []) → (): no shared layer, the backbone is the shared
    network (only an architecture declaring `no_shared_layers` takes it; MultiTaskModel checks)."""
    given = None if shared_layers is None else () if _no_layers(shared_layers) else widths(shared_layers,
                                                                                             "shared_layers")
    if num_layers is not None:
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise UserError(f"num_layers must be a positive integer, got {num_layers!r}")
        if given is None:
            return widths(num_layers, "num_layers")
        if len(given) != num_layers:
            raise UserError(f"num_layers={num_layers} but shared_layers has {len(given)} widths {list(given)}")
    return widths(DEFAULT_SHARED, "shared_layers") if given is None else given


def _no_layers(shared_layers) -> bool:
    if isinstance(shared_layers, bool):
        return False
    if isinstance(shared_layers, int):
        return shared_layers == 0
    return isinstance(shared_layers, Sequence) and not isinstance(shared_layers, str) and len(shared_layers) == 0


def int_tuple(values, what: str) -> tuple[int, ...] | None:
    """A list of integers (None stays None: not given)."""
    if values is None:
        return None
    if isinstance(values, str) or not isinstance(values, Sequence) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UserError(f"{what} takes a list of integers, got {values!r}")
    return tuple(values)


def head_widths(task_layers, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """task → hidden widths of its head: one list for every task, or a dict over every task ([] = no hidden
    layer)."""
    per_task = task_layers if isinstance(task_layers, Mapping) else dict.fromkeys(names, task_layers)
    if missing := [n for n in names if n not in per_task]:
        raise UserError(f"task_layers has no entry for task(s) {missing}")
    if unknown := [n for n in per_task if n not in names]:
        raise UserError(f"task_layers names unknown task(s) {unknown}; the model's tasks are {list(names)}")
    out = {n: tuple(int(w) for w in per_task[n]) for n in names}
    if bad := {n: list(w) for n, w in out.items() if any(x < 1 for x in w)}:
        raise UserError(f"task_layers widths must be positive, got {bad}")
    return out


def entry_config(entry, given):
    """An entry's own config: the dataclass given, a dict of its fields, or the defaults."""
    if entry.config_cls is None or dataclasses.is_dataclass(given):
        return given
    try:
        return entry.config_cls(**(given or {}))
    except TypeError as e:
        raise UserError(f"bad options for {entry.name}: {e}") from None


def per_task_values(values: Mapping | None, names: Sequence[str], what: str) -> dict[str, float]:
    """A {task: positive number} dict over some of the tasks (task_lrs, init_weights)."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UserError(f"{what} must be a dict of task name to number, got {values!r}")
    if unknown := [t for t in values if t not in names]:
        raise UserError(f"{what} names unknown task(s) {unknown}; the model's tasks are {list(names)}")
    try:
        out = {t: float(v) for t, v in values.items()}
    except (TypeError, ValueError):
        raise UserError(f"{what} values must be numbers, got {dict(values)}") from None
    if bad := {t: v for t, v in out.items() if not 0 < v < math.inf}:
        raise UserError(f"{what} values must be positive and finite, got {bad}")
    return out


def relation_pairs(relations: Mapping | None, names: Sequence[str]) -> dict[tuple[str, str], str]:
    """{(a, b): 'positive' | 'negative' | 'neutral'} over pairs of distinct known tasks; a pair is unordered, so it
    is stored in the model's task order, and (a, b) and (b, a) must not disagree."""
    if relations is None:
        return {}
    if not isinstance(relations, Mapping):
        raise UserError(f"task_relations must be a dict {{(task_a, task_b): relation}}, got {relations!r}")
    out: dict[tuple[str, str], str] = {}
    for pair, relation in relations.items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and pair[0] != pair[1]):
            raise UserError(f"task_relations keys are pairs of two different tasks, got {pair!r}")
        if unknown := [t for t in pair if t not in names]:
            raise UserError(f"task_relations names unknown task(s) {unknown}; the model's tasks are {list(names)}")
        if relation not in RELATIONS:
            raise UserError(f"task relation of {pair} must be one of {RELATIONS}, got {relation!r}")
        key = tuple(sorted(pair, key=list(names).index))
        if out.setdefault(key, relation) != relation:
            raise UserError(f"task_relations gives {key} both {out[key]!r} and {relation!r}")
    return out


def task_values(text: str, what: str) -> dict[str, float]:
    """`classes=0.01,coarse=0.001` → {task: value} (a flag's text; the names are checked by the model)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not all("=" in p for p in parts):
        raise UserError(f"{what} takes task=value pairs (e.g. classes=0.01,coarse=0.001), got {text!r}")
    pairs = [p.split("=", 1) for p in parts]
    try:
        out = {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise UserError(f"{what} takes task=value pairs with numbers, got {text!r}") from None
    if len(out) != len(pairs) or any(not 0 < v < math.inf for v in out.values()):
        raise UserError(f"{what}: each task once, with a positive finite value; got {text!r}")
    return out


def weights_text(values: Mapping[str, float]) -> str:
    """A {task: number} dict as the `name=value,...` text the weightings' configs (and their flags) take."""
    return ",".join(f"{t}={v!r}" for t, v in values.items())
