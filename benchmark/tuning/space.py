"""Search spaces, declared once: each tunable knob's range sits in its config field's metadata
(`field(default=…, metadata=searchable(LogUniform(1, 1e6, source=…)))`), with where the range comes from. A
strategy's space = the shared knobs (SHARED: the learning rate) + every part's tunable fields, keyed as a config
file names them (`lr`, `ewc.ewc_lambda`); an entry that declares none is tuned on the shared knobs alone.

`stability=True` marks the knob that trades plasticity for stability (EWC's λ, LwF's α, …): the continual protocol
(continual.py) decays it from the top of its range."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Dist:
    """One knob's range: kind log-uniform | uniform (low, high) or choice (choices)."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()
    source: str = ""  # where the range comes from (a paper, Mammoth's or van de Ven's grid)
    stability: bool = False

    def optuna(self):
        """The same range as an Optuna distribution (what both searchers sample)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        return FloatDistribution(self.low, self.high, log=self.kind == "log-uniform")

    def describe(self) -> dict:
        shape = {"choices": list(self.choices)} if self.kind == "choice" else {"low": self.low, "high": self.high}
        return {"kind": self.kind, **shape, "source": self.source} | ({"stability": True} if self.stability else {})

    def top(self):
        """The most stable value: the range's top (continual protocol's start)."""
        return max(self.choices) if self.kind == "choice" else self.high

    def decayed(self, value, factor: float):
        """value · factor, or the next smaller choice; None below the range."""
        if self.kind == "choice":
            smaller = sorted(c for c in self.choices if c < value)
            return smaller[-1] if smaller else None
        nxt = value * factor
        return nxt if nxt >= self.low * (1 - 1e-12) else None


def LogUniform(low: float, high: float, source: str, stability: bool = False) -> Dist:  # noqa: N802
    assert 0 < low < high and math.isfinite(high)
    return Dist("log-uniform", low, high, source=source, stability=stability)


def Uniform(low: float, high: float, source: str, stability: bool = False) -> Dist:  # noqa: N802
    return Dist("uniform", low, high, source=source, stability=stability)


def Choice(choices: tuple, source: str, stability: bool = False) -> Dist:  # noqa: N802
    return Dist("choice", choices=tuple(choices), source=source, stability=stability)


def searchable(dist: Dist, **metadata) -> dict:
    """A config field's metadata declaring its range: `field(default=20.0, metadata=searchable(LogUniform(…)))`."""
    return {"search": dist, **metadata}


SHARED = {"lr": LogUniform(1e-4, 1e-2, source="Adam around its default 1e-3 (Kingma & Ba 2015), two decades; "
                                              "Mammoth tunes every method's lr the same way")}


def search_space(strategy: str) -> dict[str, Dist]:
    """`lr` and every tunable knob of the strategy's parts (`lwf+replay`: LwF's and replay's)."""
    from benchmark.registry import STRATEGIES

    entry = STRATEGIES.get(strategy)
    space = dict(SHARED)
    for part in entry.parts or (entry,):
        for f in fields(part.config_cls) if part.config_cls else ():
            if "search" in f.metadata:
                space[f"{part.name}.{f.name}"] = f.metadata["search"]
    return space


def stability_knob(space: dict[str, Dist]) -> str | None:
    """The key of the space's stability knob (the first declared), or None (naive, joint, …)."""
    return next((k for k, d in space.items() if d.stability), None)
