"""Name → builder registries for streams, data sources, backbones, strategies and task kinds.

One class, used for each. It raises on a duplicate name (a silent overwrite would run the wrong code) and on an
unknown name (listing the known ones), and it imports its own package first so that registration never depends on
who imported what. Strategies have a subclass: one that is Avalanche's template plus plugins registers its plugins
once, its builder is generated, and it combines with any other such strategy by '+' (`StrategyRegistry`).
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
    # training of its own, so `--lr-schedule cosine-stream` restarts with it (benchmark/harness/harness_plugins.py)
    restarts_each_experience: bool = False
    # A strategy that is Avalanche's SupervisedTemplate plus plugins: (its config, the template's keyword arguments)
    # → its plugins, the function `STRATEGIES.register_plugins` decorates. Such strategies combine: `--strategy
    # lwf+replay` (StrategyRegistry.compose).
    plugins: Callable[..., list] | None = None
    equivalent_to: str = ""  # a strategy this one is declared to reproduce exactly (else R must differ from naive's)
    draws_own_batches: bool = False  # replaces the training loader (replay): no --sampler other than shuffle
    needs_hidden: bool = False  # builds on the shared hidden layers (progressive's columns): --hidden not empty
    # The method trains past tasks' heads (distillation to them, replayed samples, projected memory gradients,
    # retraining or resetting the model): any other strategy leaves a past head bit-identical (a test checks both).
    trains_past_heads: bool = False
    # Trains for its own epochs and schedule (gdumb): (its config, the run's schedule as described) → (schedule,
    # epochs) as the training line of tables and summary.json states them (benchmark/harness/harness_plugins.py).
    own_budget: Callable[..., tuple[str, str]] | None = None
    # The scenarios it can run in (benchmark/harness/scenarios.py): one that needs the task label at test time
    # (progressive's columns) or one model per task (single_task) is task-IL only.
    scenarios: tuple[str, ...] = ("task-il", "class-il", "domain-il")
    # Trains the backbone slower than the rest (slca's slow learner): (its config) → the factor of --lr the backbone
    # trains at, in the optimizer's backbone group (`backbone_lr`); --backbone-lr is then refused.
    slow_backbone: Callable[..., float] | None = None
    # The task kinds (benchmark/tasks/kinds) whose heads it can train (empty: every kind); a run whose heads are of
    # another kind is one UserError when the strategy is built (`refuse_tasks`).
    task_kinds: tuple[str, ...] = ()
    # A method for a pretrained backbone (issue 32: simplecil, ranpac, the prompt methods, slca): the `ptm` profile
    # compares them; the zoo profiles, of methods for networks trained from scratch, need not hold them.
    ptm: bool = False
    # Learns prompts that enter a frozen ViT's token sequence (l2p, dualprompt, coda_prompt; strategies/common/
    # prompting.py): --backbone-mode frozen only, the backbone runs on images every step (the feature cache is not
    # used), and the heads read a feature vector (not the dense suite's maps: refused when the network is built).
    prompts_backbone: bool = False
    # Fits its classifier in closed form on the backbone's pooled features (simplecil, ranpac): one pass over each
    # experience's data, no gradient step, no optimizer. It needs a frozen backbone (--backbone-mode frozen; a run
    # on cached features takes seconds) and a model whose backbone gives those features (ModelMeta); its network is
    # the backbone and its own classifier (the shared layers and the model's heads are not used).
    training_free: bool = False

    def backbone_lr(self, cfg) -> float:
        """The learning rate of the backbone's parameter group for run config `cfg`: --backbone-lr (0: --lr), or the
        strategy's factor of --lr (`slow_backbone`)."""
        return cfg.backbone_lr if self.slow_backbone is None else self.slow_backbone(cfg.strategy_args) * cfg.lr

    def refuse_tasks(self, strategy: str, tasks) -> None:
        """Heads (TaskSpecs) of a kind this strategy cannot train are one UserError, never a head left untrained."""
        if not self.runs_on({t.kind for t in tasks}):
            bad = sorted({t.kind for t in tasks} - set(self.task_kinds))
            raise UserError(f"--strategy {strategy} trains heads of kind {' or '.join(self.task_kinds)} only; this "
                            f"run's heads are {', '.join(bad)}: use a stream of class-label tasks (binary_tasks, "
                            f"split_classes) or another strategy")

    def runs_on(self, kinds) -> bool:
        """Whether it can train heads of these kinds."""
        return not self.task_kinds or set(kinds) <= set(self.task_kinds)

    @property
    def backbone_modes(self) -> tuple[str, ...]:
        """The --backbone-mode values it runs with: frozen only for the closed-form and the prompt methods."""
        return ("frozen",) if self.training_free or self.prompts_backbone else ("finetune", "frozen", "last-k")

    def run_flags(self) -> tuple[str, ...]:
        """The flags every run of this strategy needs beyond the defaults (`--backbone-mode frozen`): what a test or
        a profile that runs every strategy passes."""
        return () if "finetune" in self.backbone_modes else ("--backbone-mode", self.backbone_modes[0])

    def refuse_options(self, cfg) -> None:
        """Options of a run config (`cfg`) that this strategy cannot honour are one UserError at config time, never a
        silently different run (nor a model, `--architecture`, that lacks what it needs: ModelMeta)."""
        if cfg.scenario not in self.scenarios:
            raise UserError(f"--strategy {cfg.strategy} runs in --scenario {' or '.join(self.scenarios)} only, not "
                            f"{cfg.scenario} (it needs the task label at test time, or a model per task)")
        if self.prompts_backbone and not MODELS.get(cfg.architecture).meta.hidden_layers:
            raise UserError(f"--strategy {cfg.strategy} feeds its prompted features to the Hat Swap network's shared "
                            f"layers, which --architecture {cfg.architecture} has not; use --architecture hatswap_net")
        if cfg.sampler != "shuffle" and self.training_free:
            raise UserError(f"--sampler {cfg.sampler} cannot apply to --strategy {cfg.strategy}: its closed-form fit "
                            f"takes each training sample once (a resampling loader would weight its class means or "
                            f"Gram matrix); use --sampler shuffle")
        if cfg.sampler != "shuffle" and self.draws_own_batches:
            raise UserError(f"--sampler {cfg.sampler} cannot apply to --strategy {cfg.strategy}: it draws its own "
                            f"training batches (replay's memory loader); use --sampler shuffle or another strategy")
        if not cfg.hidden and self.needs_hidden:
            raise UserError(f"--strategy {cfg.strategy} builds on the shared hidden layers and --hidden is empty; "
                            f"pass at least one width (--hidden 128)")
        if self.needs_hidden and not MODELS.get(cfg.architecture).meta.hidden_layers:
            raise UserError(f"--strategy {cfg.strategy} rebuilds the Hat Swap network's hidden layers, which "
                            f"--architecture {cfg.architecture} has not; use --architecture hatswap_net")
        if self.slow_backbone is not None and cfg.backbone_lr:
            raise UserError(f"--backbone-lr {cfg.backbone_lr:g} cannot apply to --strategy {cfg.strategy}: it sets "
                            f"the backbone's learning rate as its own factor of --lr "
                            f"(--{cfg.strategy}.backbone-lr-ratio); leave --backbone-lr at 0")
        if cfg.backbone_mode not in self.backbone_modes:
            what = ("is training-free (a closed-form classifier on the frozen backbone's features, no gradient "
                    "step)" if self.training_free else "learns prompts for a frozen pretrained backbone")
            raise UserError(f"--strategy {cfg.strategy} {what}; pass --backbone-mode frozen (not "
                            f"{cfg.backbone_mode})")
        if self.training_free and not MODELS.get(cfg.architecture).meta.backbone_features:
            raise UserError(f"--strategy {cfg.strategy} classifies the backbone's pooled features, which "
                            f"--architecture {cfg.architecture} does not expose; use --architecture hatswap_net")


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
    # its backbone gives B×D pooled features, `feat_dim` wide, that a classifier can read directly (the Hat Swap
    # network): what a training-free strategy (StrategyMeta.training_free) classifies
    backbone_features: bool = False


class Registry:
    # (name, its parts' entries) → the Entry of `a+b`; None: a name with '+' is an unknown name (StrategyRegistry's
    # entries combine)
    compose: Callable[[str, list[Entry]], Entry] | None = None

    def __init__(self, kind: str, package: str, meta_cls: type | None = None):
        self.kind, self.package, self.meta_cls, self._entries = kind, package, meta_cls, {}

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


def template_with(own_plugins: Callable[..., list], name: str, module: str | None = None) -> Callable[..., Any]:
    """The builder of a strategy that is Avalanche's SupervisedTemplate plus plugins: build(cfg, plugins=(),
    **template_kwargs) → SupervisedTemplate(plugins=[*plugins, *own_plugins(cfg, template_kwargs)], **template_kwargs),
    the harness's plugins first, in a new list (the caller's stays as it was). `module`: the strategy's file, where
    the builder is said to come from (the layout test and the duplicate-name error read it)."""

    def build(cfg=None, plugins=(), **template_kwargs):
        # imported here, not at the top: `benchmark.registry` is imported by every command, most of which never
        # build a strategy, and Avalanche takes seconds to import
        from avalanche.training.templates import SupervisedTemplate

        return SupervisedTemplate(plugins=[*plugins, *own_plugins(cfg, template_kwargs)], **template_kwargs)

    build.__name__ = build.__qualname__ = f"build_{name}"
    build.__module__ = module or build.__module__
    return build


class StrategyRegistry(Registry):
    """Strategies. One that is Avalanche's SupervisedTemplate plus plugins registers the function that returns its
    plugins, once; its builder is generated (`template_with`) and it combines with every other such strategy:

        @STRATEGIES.register_plugins("ewc", config_cls=EWCConfig)
        def ewc_plugins(cfg: EWCConfig, template_kwargs: dict) -> list:  # the template's keyword arguments
            return [EWCPlugin(cfg)]

    `--strategy ewc+replay` is then the template with the plugins of every part, in the order named, each part
    configured by its own namespaced flags (`--ewc.ewc-lambda`, `--replay.mem-size`). One that changes the model
    (progressive), the training schedule (joint), the data it trains on from scratch (gdumb) or the protocol
    (single_task) registers its own builder with `register`, and cannot combine."""

    def __init__(self, package: str = "strategies"):
        super().__init__("strategy", package, meta_cls=StrategyMeta)

    def register(self, name: str, config_cls: type | None = None, **meta):
        if "plugins" in meta:
            raise TypeError(f"strategy {name!r}: a strategy that is the template plus plugins registers the function "
                            f"returning them, once: @STRATEGIES.register_plugins({name!r}, ...)")
        return super().register(name, config_cls, **meta)

    def register_plugins(self, name: str, config_cls: type | None = None, **meta):
        """Decorates own_plugins(cfg, template_kwargs) → the strategy's plugins; registers the builder made from it."""

        def deco(own_plugins):
            Registry.register(self, name, config_cls, plugins=own_plugins, **meta)(
                template_with(own_plugins, name, own_plugins.__module__))
            return own_plugins

        return deco

    def composable(self) -> list[str]:
        """The strategies that combine with '+'."""
        return [n for n in self.names() if self.get(n).meta.plugins is not None]

    def compose(self, name: str, parts: list[Entry]) -> Entry:
        names = [p.name for p in parts]
        if len(set(names)) != len(names) or len(names) < 2:
            raise UserError(f"--strategy {name}: name two or more different strategies joined by '+'")
        if bad := [p.name for p in parts if p.meta.plugins is None]:
            raise UserError(f"--strategy {name}: {', '.join(bad)} cannot be combined with other strategies; these "
                            f"can: {', '.join(self.composable())}")

        def own_plugins(cfg: CompositeArgs, template_kwargs: dict) -> list:
            return [plugin for part, (_, part_cfg) in zip(parts, cfg.parts, strict=True)
                    for plugin in part.meta.plugins(part_cfg, template_kwargs)]

        meta = StrategyMeta(plugins=own_plugins, draws_own_batches=any(p.meta.draws_own_batches for p in parts),
                            trains_past_heads=any(p.meta.trains_past_heads for p in parts),
                            needs_hidden=any(p.meta.needs_hidden for p in parts),
                            scenarios=tuple(sc for sc in parts[0].meta.scenarios
                                            if all(sc in p.meta.scenarios for p in parts)))
        return Entry(name, template_with(own_plugins, name), None, meta, parts=tuple(parts))


STREAMS = Registry("stream", "benchmark.streams")
SOURCES = Registry("source", "benchmark.data", meta_cls=SourceMeta)
BACKBONES = Registry("backbone", "benchmark.models", meta_cls=BackboneMeta)
STRATEGIES = StrategyRegistry()
KINDS = Registry("task kind", "benchmark.tasks.kinds")
# (run config, task specs, image_size=, in_chans=) → (model, backbone identity): the Hat Swap network here; the
# multi-task architectures register theirs from benchmark/mtl/continual.py, wired in by the composition root.
MODELS = Registry("model", "benchmark.models", meta_cls=ModelMeta)
DEFAULT_MODEL = "hatswap_net"  # --architecture's default, the value of runs written before it existed
