"""Name → builder registries for streams, data sources, backbones, strategies and task kinds.

One class, used for each. It raises on a duplicate name (a silent overwrite would run the wrong code) and on an
unknown name (listing the known ones), and it imports its own package first so that registration never depends on
who imported what.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import UserError


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[..., Any]
    config_cls: type | None = None  # frozen dataclass holding this entry's own knobs
    meta: Any = field(default_factory=dict)  # the registry's meta class (typed), or a dict where it has none
    parts: tuple = ()  # a composite's entries, in order (`--strategy lwf+replay`)


@dataclass(frozen=True)
class CompositeArgs:
    """A composite entry's knobs: each part's own config, in order (`lwf.alpha` and `replay.mem_size` keep their
    names in config.json, as when each part runs alone)."""

    parts: tuple[tuple[str, Any], ...]

    def __getitem__(self, name: str):
        return dict(self.parts)[name]


@dataclass(frozen=True)
class StrategyMeta:
    """What the harness must know about a strategy to run it right (`@STRATEGIES.register(name, one_shot=True)`)."""

    one_shot: bool = False  # trains on the whole stream at once (joint training): R gets one row, 'after_joint'
    baseline: bool = False  # one model per task (single-task baselines): only R's diagonal means something
    # trains a fresh model from the initial weights at every experience (single_task, gdumb): each experience is a
    # training of its own, so `--lr-schedule cosine-stream` restarts with it (benchmark/harness_plugins.py)
    restarts_each_experience: bool = False
    # A strategy that is Avalanche's SupervisedTemplate plus plugins declares them: (its config, the template's
    # keyword arguments) → its plugins. Such strategies combine: `--strategy lwf+replay` (benchmark/composition.py).
    plugins: Callable[..., list] | None = None
    equivalent_to: str = ""  # a strategy this one is declared to reproduce exactly (else R must differ from naive's)
    draws_own_batches: bool = False  # replaces the training loader (replay): no --sampler other than shuffle
    needs_hidden: bool = False  # builds on the shared hidden layers (progressive's columns): --hidden not empty
    # The method trains past tasks' heads (distillation to them, replayed samples, projected memory gradients,
    # retraining or resetting the model): any other strategy leaves a past head bit-identical (a test checks both).
    trains_past_heads: bool = False
    # Trains for its own epochs and schedule (gdumb): (its config, the run's schedule as described) → (schedule,
    # epochs) as the training line of tables and summary.json states them (benchmark/harness_plugins.py).
    own_budget: Callable[..., tuple[str, str]] | None = None
    # The scenarios it can run in (benchmark/scenarios.py): one that needs the task label at test time (progressive's
    # columns) or one model per task (single_task) is task-IL only.
    scenarios: tuple[str, ...] = ("task-il", "class-il", "domain-il")

    def refuse_options(self, cfg) -> None:
        """Options of a run config (`cfg`) that this strategy cannot honour are one UserError at config time, never a
        silently different run (nor a model, `--architecture`, that lacks what it needs: ModelMeta)."""
        if cfg.scenario not in self.scenarios:
            raise UserError(f"--strategy {cfg.strategy} runs in --scenario {' or '.join(self.scenarios)} only, not "
                            f"{cfg.scenario} (it needs the task label at test time, or a model per task)")
        if cfg.sampler != "shuffle" and self.draws_own_batches:
            raise UserError(f"--sampler {cfg.sampler} cannot apply to --strategy {cfg.strategy}: it draws its own "
                            f"training batches (replay's memory loader); use --sampler shuffle or another strategy")
        if not cfg.hidden and self.needs_hidden:
            raise UserError(f"--strategy {cfg.strategy} builds on the shared hidden layers and --hidden is empty; "
                            f"pass at least one width (--hidden 128)")
        if self.needs_hidden and not MODELS.get(cfg.architecture).meta.hidden_layers:
            raise UserError(f"--strategy {cfg.strategy} rebuilds the Hat Swap network's hidden layers, which "
                            f"--architecture {cfg.architecture} has not; use --architecture hatswap")


@dataclass(frozen=True)
class SourceMeta:
    """An image source's format (`@SOURCES.register(name, native_size=28, channels=1)`)."""

    native_size: int  # the stored images' side, in pixels
    channels: int


@dataclass(frozen=True)
class BackboneMeta:
    hub_id: str | None = None  # pretrained weights on the Hugging Face hub (None: trained from scratch)
    timm_name: str | None = None  # the timm architecture, where the backbone is one
    weights_file: bool = False  # no hub weights, but takes --backbone-weights FILE (e.g. `hatswap pretrain`'s)


@dataclass(frozen=True)
class ModelMeta:
    """What a model family (`--architecture`) offers the strategies beyond the model contract
    (benchmark/models/contract.py), which each meets; a strategy that needs more declares it (StrategyMeta) and is
    refused at config time on a model that lacks it."""

    # its shared layers are the `--hidden` Linear stack of the Hat Swap network, which progressive's columns rebuild
    hidden_layers: bool = False


class Registry:
    def __init__(self, kind: str, package: str, meta_cls: type | None = None, compose: Callable | None = None):
        """compose(name, entries) → the Entry of `a+b` (None: names with '+' are unknown names)."""
        self.kind, self.package, self.meta_cls, self.compose, self._entries = kind, package, meta_cls, compose, {}

    def register(self, name: str, config_cls: type | None = None, **meta):
        if self.meta_cls is not None:
            known = {f.name for f in dataclasses.fields(self.meta_cls)}
            if unknown := sorted(set(meta) - known):
                raise TypeError(f"{self.kind} {name!r}: unknown option(s) {unknown} in register(); known: "
                                f"{', '.join(sorted(known))}")
            try:
                meta = self.meta_cls(**meta)
            except TypeError as e:
                raise TypeError(f"{self.kind} {name!r}: {e}") from None

        def deco(fn):
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} already registered by {self._entries[name].build.__module__}")
            self._entries[name] = Entry(name, fn, config_cls, meta)
            return fn

        return deco

    def get(self, name: str) -> Entry:
        importlib.import_module(self.package)
        if "+" in name and self.compose is not None and name not in self._entries:
            return self.compose(name, [self.get(part) for part in name.split("+")])
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def names(self) -> list[str]:
        importlib.import_module(self.package)
        return sorted(self._entries)


STREAMS = Registry("stream", "benchmark.streams")
SOURCES = Registry("source", "benchmark.data", meta_cls=SourceMeta)
BACKBONES = Registry("backbone", "benchmark.models", meta_cls=BackboneMeta)
def _compose_strategies(name: str, parts: list[Entry]) -> Entry:
    return importlib.import_module("benchmark.composition").compose_strategies(name, parts)


STRATEGIES = Registry("strategy", "strategies", meta_cls=StrategyMeta, compose=_compose_strategies)
KINDS = Registry("task kind", "benchmark.tasks.kinds")
# (run config, task specs, image_size=, in_chans=) → (model, backbone identity): the Hat Swap network here; the
# multi-task architectures register theirs from benchmark/mtl/continual.py, wired in by the composition root.
MODELS = Registry("model", "benchmark.models", meta_cls=ModelMeta)
DEFAULT_MODEL = "hatswap"  # --architecture's default, the value of runs written before it existed
