"""Name → builder registries for streams, data sources, backbones and strategies.

One class, used four times. It raises on a duplicate name (a silent overwrite would run the wrong code) and on an
unknown name (listing the known ones), and it imports its own package first so that registration never depends on
who imported what.
"""

from __future__ import annotations

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
    meta: dict = field(default_factory=dict)  # e.g. {"one_shot": True} for joint training


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind, self.package, self._entries = kind, package, {}

    def register(self, name: str, config_cls: type | None = None, **meta):
        def deco(fn):
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} already registered by {self._entries[name].build.__module__}")
            self._entries[name] = Entry(name, fn, config_cls, meta)
            return fn

        return deco

    def get(self, name: str) -> Entry:
        importlib.import_module(self.package)
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def names(self) -> list[str]:
        importlib.import_module(self.package)
        return sorted(self._entries)


STREAMS = Registry("stream", "benchmark.streams")
SOURCES = Registry("source", "benchmark.data")
BACKBONES = Registry("backbone", "benchmark.models")
STRATEGIES = Registry("strategy", "strategies")
