"""The one adapter from the multi-task toolkit document's keywords (docs/multi-task-api.md) to the registered entries'
own knobs. An architecture's or weighting's knob lives in its config dataclass; the field that a document keyword
sets declares it, so a new entry brings its keywords with it and nothing here names one:

    num_experts: int = field(default=4, metadata={"keyword": "num_experts", "config_key": "experts"})

`keyword`: the `MultiTaskModel(...)` keyword (a list becomes a tuple of integers, a {task: number} dict the
`task=value,...` text the field takes; `nonempty`: an empty list is an error, not the field's default).
`config_key`: also a run-level key, as the document's CLI has it: `--experts`, a profile's or config.json's
"experts" (= `mmoe.num_experts`); config.json keeps writing it, so runs written before still match their config.
A run-level key, like the document's flag, is taken whatever the architecture (unused by the others); any other
keyword given to an entry that does not own it is an error naming its owner.

Entry names: the registered one or an alias its registration declares (`aliases=("cross_stitch",)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from benchmark.errors import UserError
from benchmark.mtl.options import entry_config, int_tuple, per_task_values, weights_text, widths
from benchmark.mtl.registries import ARCHITECTURES, WEIGHTINGS
from benchmark.registry import Entry, Registry

KEYWORD_REGISTRIES = (ARCHITECTURES, WEIGHTINGS)  # whose entries' config fields may declare keywords


@dataclasses.dataclass(frozen=True)
class Keyword:
    entry: str  # the registered entry that owns it
    field: dataclasses.Field  # the field of the entry's config dataclass it sets
    config_key: str = ""  # its run-level key, if it has one


def resolve(registry: Registry, name: str) -> Entry:
    """The entry registered as `name`, or the one whose registration declares `name` among its aliases."""
    for other in registry.names():
        if name in registry.get(other).meta.aliases:
            return registry.get(other)
    return registry.get(name)


def keywords(registries=KEYWORD_REGISTRIES) -> dict[str, Keyword]:
    """keyword → what it sets, over every entry of `registries`."""
    out = {}
    for registry in registries:
        for name in registry.names():
            cls = registry.get(name).config_cls
            for f in dataclasses.fields(cls) if cls else ():
                if kw := f.metadata.get("keyword"):
                    if kw in out:
                        raise KeyError(f"keyword {kw!r} declared by both {out[kw].entry!r} and {name!r}")
                    out[kw] = Keyword(name, f, f.metadata.get("config_key", ""))
    return out


def layers_keywords() -> dict[str, str]:
    """The keywords naming an architecture's shared layers (MMoE's `expert_layers`) → that architecture."""
    return {ARCHITECTURES.get(n).meta.layers_keyword: n for n in ARCHITECTURES.names()
            if ARCHITECTURES.get(n).meta.layers_keyword}


def check_known(given: Mapping) -> None:
    """Keywords that no entry declares are one error listing the known ones (a misspelt knob is never ignored)."""
    known = set(keywords()) | set(layers_keywords())
    if unknown := sorted(set(given) - known):
        raise UserError(f"unknown MultiTaskModel keyword(s) {unknown}; the architectures' and weightings' keywords "
                        f"are {sorted(known)} (or pass architecture_args / weighting_args)")


def with_keywords(entry: Entry, given, values: Mapping, task_names) -> object:
    """entry_config(entry, given) with the keywords among `values` (keyword → value; None = not given) that it owns
    set on it. A keyword of another entry is an error naming its owner, unless it is also a run-level key."""
    cfg = entry_config(entry, given)
    declared = keywords()
    for kw, value in values.items():
        if value is None or kw not in declared:
            continue
        owner = declared[kw]
        if owner.entry != entry.name:
            if owner.config_key or not _same_axis(owner.entry, entry):
                continue
            raise UserError(f"{kw} belongs to {owner.entry!r}, not {entry.name!r}")
        cfg = dataclasses.replace(cfg or entry.config_cls(), **{owner.field.name: _value(kw, owner.field, value,
                                                                                         task_names)})
    return cfg


def _same_axis(owner: str, entry: Entry) -> bool:
    """Whether `owner` is registered beside `entry` (an architecture's keyword says nothing to a weighting)."""
    return any(owner in r.names() and entry.name in r.names() for r in KEYWORD_REGISTRIES)


def _value(kw: str, f: dataclasses.Field, value, task_names):
    """A keyword's Python value as its config field holds it."""
    if isinstance(f.default, tuple):
        out = int_tuple(value, kw)
        if not out and f.metadata.get("nonempty"):
            raise UserError(f"{kw} needs at least one value; leave it out for the default ({f.metadata['nonempty']})")
        return out
    if isinstance(f.default, str) and isinstance(value, Mapping):
        return weights_text(per_task_values(value, task_names, kw))
    if isinstance(f.default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{kw} must be an integer, got {value!r}")
    return value


def shared_layers_of(architecture: Entry, shared_layers, given: Mapping):
    """The shared layers as given by `shared_layers` or by the architecture's own keyword for them (MMoE's
    `expert_layers`): both given must agree; another architecture's is an error."""
    for kw, owner in layers_keywords().items():
        if given.get(kw) is None:
            continue
        if owner != architecture.name:
            raise UserError(f"{kw} sizes {owner}'s shared layers; architecture {architecture.name!r} has none (use "
                            f"shared_layers)")
        own = widths(given[kw], kw)
        if shared_layers is not None and widths(shared_layers, "shared_layers") != own:
            raise UserError(f"{kw} are {owner}'s shared layers: give {kw}={list(own)} or shared_layers, not both")
        shared_layers = own
    return shared_layers


# Run-level keys (`--experts`, a profile's "experts") ↔ the entry knobs they set, for config files and config.json.

def config_keys() -> dict[str, tuple[str, Keyword]]:
    """run-level key → (the entry knob's flat key, `mmoe.num_experts`; the keyword)."""
    return {k.config_key: (f"{k.entry}.{k.field.name}", k) for k in keywords().values() if k.config_key}


def to_knobs(values: Mapping) -> dict:
    """A config file's or profile's keys with run-level keys renamed to the knobs they set (`experts` →
    `mmoe.num_experts`); a knob given both ways must agree."""
    out = dict(values)
    for key, (knob, _) in config_keys().items():
        if key in out:
            value = out.pop(key)
            if knob in out and out[knob] != value:
                raise UserError(f"{key!r} ({value!r}) and {knob!r} ({out[knob]!r}) set the same knob; give one")
            out[knob] = value
    return out


def to_config_keys(flat: Mapping) -> dict:
    """A flat config (`MTLConfig.to_dict`) with each knob that has a run-level key written under that key, as
    config.json always held it: the chosen entry's value, else the knob's default."""
    out = dict(flat)
    for key, (knob, kw) in config_keys().items():
        out[key] = out.pop(knob, kw.field.default)
    return out
