"""Strategies combined: `--strategy lwf+replay` is Avalanche's SupervisedTemplate with the plugins of every part,
in the order named, each part configured by its own namespaced flags (`--lwf.alpha`, `--replay.mem-size`). Only
strategies that are the template plus plugins compose (they declare `plugins=` when they register); one that
changes the model (progressive), the training schedule (joint), the data it trains on from scratch (gdumb) or the
protocol (single_task) is one error line naming the ones that do."""

from __future__ import annotations

from avalanche.training.templates import SupervisedTemplate

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES, Entry, StrategyMeta


def composable() -> list[str]:
    return [n for n in STRATEGIES.names() if STRATEGIES.get(n).meta.plugins is not None]


def compose_strategies(name: str, parts: list[Entry]) -> Entry:
    names = [p.name for p in parts]
    if len(set(names)) != len(names) or len(names) < 2:
        raise UserError(f"--strategy {name}: name two or more different strategies joined by '+'")
    if bad := [p.name for p in parts if p.meta.plugins is None]:
        raise UserError(f"--strategy {name}: {', '.join(bad)} cannot be combined with other strategies; these can: "
                        f"{', '.join(composable())}")

    def build(cfg, plugins=(), **template_kwargs) -> SupervisedTemplate:
        own = [plugin for part, (_, part_cfg) in zip(parts, cfg.parts, strict=True)
               for plugin in part.meta.plugins(part_cfg, template_kwargs)]
        return SupervisedTemplate(plugins=[*plugins, *own], **template_kwargs)

    meta = StrategyMeta(draws_own_batches=any(p.meta.draws_own_batches for p in parts),
                        trains_past_heads=any(p.meta.trains_past_heads for p in parts),
                        needs_hidden=any(p.meta.needs_hidden for p in parts),
                        scenarios=tuple(sc for sc in parts[0].meta.scenarios
                                        if all(sc in p.meta.scenarios for p in parts)))
    return Entry(name, build, None, meta, parts=tuple(parts))
