"""Paired statistics for a report: which differences between strategies are real.

Runs of different strategies at the same seed are paired (benchmark/runtime/randomness.py: the same initial weights, the
same order of each experience's samples, the same test sets; each strategy's own draws on its own generator), so a
difference of two strategies is measured seed by seed, d_s = metric(strategy, s) − metric(reference, s), over the
seeds both have. Pairing removes what a seed does to both (an easy or hard initialisation) from the comparison.

For each strategy against `naive` and against the stream's best strategy (highest mean ACC, `single_task`
baselines excluded), each pair once (best − naive, not also naive − best):

    mean paired difference  d̄ = mean_s d_s
    95 % interval           d̄ ± t_{0.975, n−1} · sd(d) / √n            (Student t; n = common seeds, n ≥ 2)
    p-value, two-sided      n ≥ 6: Wilcoxon signed-rank on d (scipy, exact where it can be; zeros dropped)
                            n < 6: paired t-test (one-sample t on d); a Wilcoxon test cannot reach p < 0.05
                            below 6 pairs (its smallest two-sided p at n = 5 is 2/2^5 = 0.0625)
    Holm-corrected p        over the whole table of one stream and one metric (every comparison with a p-value):
                            sort p ascending, p_(i) · (m − i + 1), made non-decreasing, capped at 1 (Holm 1979)

Where every d_s is the same (no spread), the test is degenerate: p = 1 when d̄ = 0, else p = 0 (an infinite t),
said as such in the table.

Across streams (or scenarios): the average rank of each strategy over the blocks (rank 1 = highest mean ACC in a
block, ties share the mean of their ranks), Friedman's test of "all strategies rank alike", and the Nemenyi
critical difference CD = q_α · √(k(k+1) / (6N)) for k strategies over N blocks, q_α the studentized range's
1 − α quantile with infinite degrees of freedom over √2 (Demšar 2006, JMLR 7, Table 5: q_0.05 = 1.960, 2.343,
2.569, 2.728 for k = 2 … 5). Two strategies whose average ranks differ by less than CD are not told apart.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

REFERENCE = "naive"
BASELINE = "single_task"
WILCOXON_FROM = 6  # pairs: below this, the paired t-test
COLUMNS = ["stream", "metric", "strategy", "against", "n", "mean_diff", "ci_low", "ci_high", "test", "p", "p_holm"]


def paired_differences(a: dict[int, float], b: dict[int, float]) -> np.ndarray:
    """seed → value for two strategies → a − b over the seeds both have a finite value for, in seed order."""
    seeds = sorted(s for s in set(a) & set(b) if np.isfinite(a[s]) and np.isfinite(b[s]))
    return np.array([a[s] - b[s] for s in seeds], dtype=float)


def _no_spread(d: np.ndarray) -> bool:
    return float(np.ptp(d)) <= 1e-12 * max(1.0, float(np.abs(d).max()))


def paired_test(d: np.ndarray) -> dict:
    """→ n, mean_diff, ci_low, ci_high (95 % t-interval of the mean difference), test (its name), p (two-sided).
    Fewer than 2 pairs: the mean alone (n = 1) or nothing (n = 0); the rest NaN and test ''."""
    from scipy import stats

    n = len(d)
    out = {"n": n, "mean_diff": float(d.mean()) if n else math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "test": "", "p": math.nan}
    if n < 2:
        return out
    mean = out["mean_diff"]
    half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    out |= {"ci_low": mean - half, "ci_high": mean + half}
    if _no_spread(d):
        return out | {"test": "none (no spread)", "p": 1.0 if abs(mean) <= 1e-12 else 0.0,
                      "ci_low": mean, "ci_high": mean}
    if n >= WILCOXON_FROM:
        if not np.any(d != 0):
            return out | {"test": "Wilcoxon", "p": 1.0}
        return out | {"test": "Wilcoxon", "p": float(stats.wilcoxon(d).pvalue)}
    return out | {"test": "paired t", "p": float(stats.ttest_1samp(d, 0.0).pvalue)}


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given; NaN stays NaN and does not count in m."""
    p = np.asarray(p, dtype=float)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m, adjusted, running = len(order), np.full(len(p), np.nan), 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def best_strategy(runs: pd.DataFrame, stream: str, metric: str = "acc") -> str | None:
    """The strategy with the highest mean `metric` on `stream`, single-task baselines excluded."""
    df = runs[(runs["stream"] == stream) & ~runs["baseline"].astype(bool)]
    means = df.astype({metric: float}).groupby("strategy")[metric].mean().dropna()
    return None if means.empty else str(means.idxmax())


def paired_table(runs: pd.DataFrame, metrics=("acc", "bwt")) -> pd.DataFrame:
    """Every strategy against naive and against the stream's best (by mean ACC), per stream and metric: one row
    per comparison (COLUMNS), p Holm-corrected over each (stream, metric) table; single-task baselines are left
    out (they answer another question). `runs`: report.collect's frame."""
    rows = []
    for stream in sorted(runs["stream"].unique()):
        df = runs[(runs["stream"] == stream) & ~runs["baseline"].astype(bool)]  # baselines compete with no one
        strategies = sorted(df["strategy"].unique())
        against = [s for s in (REFERENCE, best_strategy(runs, stream)) if s in strategies]
        for metric in metrics:
            values = {s: {int(r["seed"]): float(r[metric]) if r[metric] is not None else math.nan
                          for _, r in df[df["strategy"] == s].iterrows()} for s in strategies}
            table, seen = [], set()
            for ref in dict.fromkeys(against):
                for s in strategies:
                    if s == ref or frozenset((s, ref)) in seen:  # best − naive is there: naive − best is not
                        continue
                    seen.add(frozenset((s, ref)))
                    d = paired_differences(values[s], values[ref])
                    if len(d) == 0:
                        continue
                    table.append({"stream": stream, "metric": metric, "strategy": s, "against": ref}
                                 | paired_test(d))
            for row, p in zip(table, holm([r["p"] for r in table]), strict=True):
                row["p_holm"] = p
            rows += table
    return pd.DataFrame(rows, columns=COLUMNS)


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(table: pd.DataFrame, stream: str, metric: str, label: str) -> str:
    """One stream's comparisons of one metric as a Markdown table (empty string when there are none)."""
    df = table[(table["stream"] == stream) & (table["metric"] == metric)]
    if df.empty:
        return ""
    lines = [f"| strategy | against | seeds | mean paired Δ{label} | 95 % interval | test | p | p (Holm) |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        interval = "n/a" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        real = " **≠**" if not math.isnan(r["p_holm"]) and r["p_holm"] < 0.05 else ""
        lines.append(f"| {r['strategy']} | {r['against']} | {r['n']} | {r['mean_diff']:+.3f} | {interval} | "
                     f"{r['test'] or 'n/a'} | {_fmt_p(r['p'])} | {_fmt_p(r['p_holm'])}{real} |")
    return "\n".join(lines)


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """scores: blocks (rows: streams or scenarios) × strategies (columns), higher is better, every cell defined →
    each strategy's mean rank over the blocks (1 = best; ties share the mean of their ranks), ascending."""
    from scipy.stats import rankdata

    ranks = np.vstack([rankdata(-row, method="average") for row in scores.to_numpy(dtype=float)])
    return pd.Series(ranks.mean(axis=0), index=scores.columns).sort_values(kind="stable")


def friedman_p(scores: pd.DataFrame) -> float:
    """Friedman's test that every strategy ranks alike over the blocks (NaN with < 3 strategies or < 2 blocks)."""
    from scipy.stats import friedmanchisquare

    if scores.shape[1] < 3 or scores.shape[0] < 2:
        return math.nan
    return float(friedmanchisquare(*scores.to_numpy(dtype=float).T).pvalue)


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks for k strategies over n_blocks blocks (Demšar 2006)."""
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n_blocks)))


def cliques(ranks: pd.Series, cd: float) -> list[list[str]]:
    """The maximal runs of strategies (in rank order) whose average ranks lie within `cd` of each other, each of
    two or more: the groups a critical-difference diagram joins with a bar."""
    names, values, groups = list(ranks.index), ranks.to_numpy(), []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and values[j + 1] - values[i] < cd:
            j += 1
        if j > i and not any(g[0] <= i and j <= g[1] for g in groups):
            groups.append((i, j))
    return [names[i:j + 1] for i, j in groups]


def rank_scores(runs: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Blocks (streams) × strategies of the mean `metric` over seeds, baselines left out, only the strategies that
    every block has."""
    df = runs[~runs["baseline"].astype(bool)].astype({metric: float})
    return df.pivot_table(index="stream", columns="strategy", values=metric, aggfunc="mean").dropna(axis=1)


def report_section(stream: str, table: pd.DataFrame) -> list[str]:
    """REPORT.md's lines on one stream's paired differences (ACC, then BWT)."""
    acc, bwt = markdown(table, stream, "acc", "ACC"), markdown(table, stream, "bwt", "BWT")
    if not acc and not bwt:
        return []
    tests = sorted(set(table.loc[table["stream"] == stream, "test"]) - {""})
    return ["### Paired differences", "",
            "Each strategy minus naive and minus the best strategy (by mean ACC), seed by seed over the seeds both "
            "ran (paired: same initial weights, data order and test sets at a seed); mean, 95 % t-interval of "
            f"the mean, two-sided p ({', '.join(tests) or 'no test: fewer than 2 common seeds'}; Wilcoxon "
            f"signed-rank from {WILCOXON_FROM} seeds, paired t below), Holm-corrected over each table; **≠** marks "
            "p (Holm) < 0.05. All rows: [paired.csv](paired.csv).", "", acc, "", bwt, ""]


def ranks_section(runs: pd.DataFrame, out) -> list[str]:
    """REPORT.md's lines on average ranks over the report's streams, and the critical-difference diagram in
    out/figures/ranks_cd.png: only where there are two or more streams and three or more strategies on all."""
    from benchmark.outputs import plots

    scores = rank_scores(runs)
    if scores.shape[0] < 2 or scores.shape[1] < 3:
        return []
    ranks = average_ranks(scores)
    cd = critical_difference(len(ranks), scores.shape[0])
    groups = cliques(ranks, cd)
    fig = plots.critical_difference(ranks, cd, groups, out / "figures" / "ranks_cd.png",
                                    title=f"average rank of mean ACC over {scores.shape[0]} streams")
    table = ["| strategy | average rank |", "|---|---|", *[f"| {s} | {r:.2f} |" for s, r in ranks.items()]]
    return ["## Average ranks over the streams", "",
            f"Rank of each strategy's mean ACC within each of {scores.shape[0]} streams ({', '.join(scores.index)}; "
            f"1 = best; strategies on every stream only, baselines left out), averaged. Friedman's test that all "
            f"rank alike: p = {_fmt_p(friedman_p(scores))}. Nemenyi's critical difference at α = 0.05: "
            f"CD = {cd:.2f} (Demšar 2006); strategies joined by a bar are not told apart.", "", *table, "",
            f"![{fig.stem}](figures/{fig.name})", ""]
