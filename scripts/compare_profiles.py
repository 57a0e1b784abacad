"""Two batches of the same strategies on the same paired seeds (e.g. `zoo` at defaults and `zoo-tuned`): for every
strategy both ran, each metric's mean in both and the paired difference B − A seed by seed
(benchmark/outputs/paired_stats.py: 95 % t-interval, paired t below 6 seeds, Wilcoxon from 6), Holm-corrected over the
strategies. A Markdown table on stdout.

`--cross`: every strategy of B against every strategy of A on the same stream (e.g. the methods on a pretrained
backbone, `ptm`, against every method trained from scratch, `zoo-split`), Holm-corrected over all the pairs, and per
B strategy whether it beats every A strategy (each paired interval above 0, each Holm p < 0.05).

    .venv/bin/python scripts/compare_profiles.py RESULTS_A RESULTS_B [--labels defaults,tuned] [--metrics acc,bwt]
    .venv/bin/python scripts/compare_profiles.py results/reference/ptm-scratch results/reference/ptm --cross \
        --labels scratch,pretrained --metrics acc --only simplecil,ranpac \
        --streams split_classes-class-il,binary_tasks-class-il
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.outputs.paired_stats import holm, paired_differences, paired_test  # noqa: E402
from benchmark.outputs.report import collect  # noqa: E402


def seed_values(group, metric: str) -> dict:
    """seed → the metric's value, for one (stream, strategy) group of `collect`'s runs."""
    return dict(zip(group.seed, group[metric].astype(float), strict=True))


def difference(t: dict) -> str:
    """A paired test's mean difference and its 95 % interval (none with one pair)."""
    ci = "" if math.isnan(t["ci_low"]) else f" [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
    return f"{t['mean_diff']:+.3f}{ci}"


def compare(a_dir: Path, b_dir: Path, labels: tuple[str, str], metrics: list[str]) -> str:
    a, b = collect(a_dir), collect(b_dir)
    lines = []
    for metric in metrics:
        rows = []
        for (stream, strategy), group_b in b.groupby(["stream", "strategy"]):
            group_a = a[(a.stream == stream) & (a.strategy == strategy)]
            if group_a.empty or group_b[metric].isna().all():
                continue
            va, vb = seed_values(group_a, metric), seed_values(group_b, metric)
            test = paired_test(paired_differences(vb, va))
            rows.append((stream, strategy, sum(va.values()) / len(va), sum(vb.values()) / len(vb), test))
        if not rows:
            continue
        corrected = holm([r[4]["p"] for r in rows])
        lines += [f"**{metric.upper()}**: {labels[1]} − {labels[0]}, paired by seed", "",
                  f"| stream | strategy | {labels[0]} | {labels[1]} | difference [95 % CI] | test | p | Holm p |",
                  "|---|---|---|---|---|---|---|---|"]
        for (stream, strategy, ma, mb, t), p_holm in zip(rows, corrected, strict=True):
            lines.append(f"| {stream} | {strategy} | {ma:+.3f} | {mb:+.3f} | {difference(t)} | "
                         f"{t['test']} (n={t['n']}) | {t['p']:.3f} | {p_holm:.3f} |")
        lines.append("")
    return "\n".join(lines)


def cross(a_dir: Path, b_dir: Path, labels: tuple[str, str], metrics: list[str], only=(), streams=()) -> str:
    """Every (stream, B strategy, A strategy) paired by seed; Holm over every pair of a metric. `only`: those B
    strategies; `streams`: those streams (the family the question names, so that Holm corrects for it alone)."""
    a, b = collect(a_dir), collect(b_dir)
    if only:
        b = b[b.strategy.isin(only)]
    if streams:
        a, b = a[a.stream.isin(streams)], b[b.stream.isin(streams)]
    lines = []
    for metric in metrics:
        rows = []
        for (stream, strat_b), group_b in b.groupby(["stream", "strategy"]):
            vb = seed_values(group_b, metric)
            for strat_a, group_a in a[a.stream == stream].groupby("strategy"):
                va = seed_values(group_a, metric)
                if set(va) & set(vb) and not group_a[metric].isna().all():
                    rows.append((stream, strat_b, strat_a, paired_test(paired_differences(vb, va))))
        if not rows:
            continue
        corrected = holm([r[3]["p"] for r in rows])
        lines += [f"**{metric.upper()}**: {labels[1]} strategy − {labels[0]} strategy, paired by seed, Holm over all "
                  f"{len(rows)} pairs", "",
                  f"| stream | {labels[1]} | {labels[0]} | difference [95 % CI] | p | Holm p |",
                  "|---|---|---|---|---|---|"]
        wins: dict = {}
        for (stream, sb, sa, t), p_holm in zip(rows, corrected, strict=True):
            lines.append(f"| {stream} | {sb} | {sa} | {difference(t)} | {t['p']:.3f} | {p_holm:.3f} |")
            wins.setdefault((stream, sb), []).append(t["ci_low"] > 0 and p_holm < 0.05)
        lines += ["", f"{labels[1]} strategies that beat every {labels[0]} strategy (interval above 0, Holm p < "
                      f"0.05): " + (", ".join(f"{sb} on {st}" for (st, sb), w in wins.items() if all(w)) or "none"), ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--labels", default="A,B")
    p.add_argument("--metrics", default="acc,bwt")
    p.add_argument("--cross", action="store_true", help="every B strategy against every A strategy (module doc)")
    p.add_argument("--only", default="", help="--cross: these B strategies only (comma-separated)")
    p.add_argument("--streams", default="", help="--cross: these streams only (comma-separated)")
    ns = p.parse_args()
    args = (ns.a, ns.b, tuple(ns.labels.split(",")), ns.metrics.split(","))
    if ns.cross:
        print(cross(*args, only=[x for x in ns.only.split(",") if x], streams=[x for x in ns.streams.split(",") if x]))
    else:
        print(compare(*args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
