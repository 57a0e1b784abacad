"""The Pareto front over the runs of a profile: which configurations no other configuration beats on every task at
once ("no task can improve without hurting another", the multi-task toolkit's Pareto optimality).

Configuration A dominates B when, on every task both were scored on, A is at least as good as B and on one task
strictly better (better = higher, or lower for a metric where lower is better, e.g. the reconstruction MSE).
Configurations scored on different task sets are compared on the tasks they share; with no task in common neither
dominates the other. The front = the configurations nothing dominates.
"""

from __future__ import annotations

from collections.abc import Mapping


def dominates(a: Mapping[str, float], b: Mapping[str, float], lower_is_better: Mapping[str, bool]) -> bool:
    common = [t for t in a if t in b and a[t] is not None and b[t] is not None]
    if not common:
        return False
    signed = [(b[t] - a[t]) if lower_is_better.get(t, False) else (a[t] - b[t]) for t in common]
    return all(d >= 0 for d in signed) and any(d > 0 for d in signed)


def front(points: Mapping[str, Mapping[str, float]], lower_is_better: Mapping[str, bool]) -> dict[str, list[str]]:
    """{configuration: the configurations that dominate it}; an empty list = on the Pareto front."""
    return {name: [other for other, q in points.items() if other != name and dominates(q, p, lower_is_better)]
            for name, p in points.items()}
