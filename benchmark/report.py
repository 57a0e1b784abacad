"""Aggregate tables over run folders: one row per (stream, strategy), mean ± std over seeds.

std is the sample standard deviation (ddof = 1) over seeds; with a single seed it is blank. BWT / forgetting /
FWT are N/A for joint training (one evaluation row), never 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from benchmark.results import atomic_write

METRICS = ("acc", "bwt", "forgetting", "fwt")
LABELS = {"acc": "ACC", "bwt": "BWT", "forgetting": "Forgetting", "fwt": "FWT", "train_wall_s": "train s/run"}


def collect(results_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(results_dir).glob("runs/*/*/seed*/summary.json")):
        try:
            s = json.loads(path.read_text())
            s["stream"], s["strategy"], s["seed"]  # noqa: B018  (the keys every table row needs)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            print(f"[report] skipping unreadable {path}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        rows.append({"stream": s["stream"], "strategy": s["strategy"], "seed": s["seed"],
                     **{m: s.get(m) for m in METRICS}, "train_wall_s": s.get("train_wall_s"),
                     "backbone_weights": s.get("backbone_weights"), "data_source": s.get("data_source")})
    return pd.DataFrame(rows, columns=["stream", "strategy", "seed", *METRICS, "train_wall_s", "backbone_weights",
                                       "data_source"])


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [*METRICS, "train_wall_s"]
    runs = runs.astype({c: float for c in cols})  # None → NaN
    g = runs.groupby(["stream", "strategy"], sort=True)
    out = g[cols].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out.insert(0, "n_seeds", g.size())
    out["seeds"] = g["seed"].apply(lambda s: " ".join(map(str, sorted(s))))
    out["backbone_weights"] = g["backbone_weights"].apply(lambda s: "; ".join(sorted(set(map(str, s)))))
    out["data_source"] = g["data_source"].apply(lambda s: "; ".join(sorted(set(map(str, s)))))
    return out.reset_index()


def _pm(mean, std) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:+.3f} ± {std:.3f}" if not pd.isna(std) else f"{mean:+.3f}"


def markdown(agg: pd.DataFrame, failed: list[str] = ()) -> str:
    lines = []
    for stream, df in agg.groupby("stream", sort=True):
        lines += [f"### {stream}", "", "| strategy | seeds | " + " | ".join(LABELS.values()) + " |",
                  "|---|---|" + "---|" * len(LABELS)]
        for _, r in df.iterrows():
            cells = [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS]
            cells.append(f"{r['train_wall_s_mean']:.1f}")
            lines.append(f"| {r['strategy']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
        lines += ["", f"Data: {'; '.join(sorted(set(df['data_source'])))}. "
                      f"Backbone weights: {'; '.join(sorted(set(df['backbone_weights'])))}. "
                      "Mean ± sample std over seeds. ACC = mean final score; BWT < 0 and forgetting > 0 mean "
                      "forgetting; n/a = undefined (joint training has no sequence).", ""]
    if failed:
        lines += ["**Failed runs** (no results written):", "", *[f"- {f}" for f in failed], ""]
    return "\n".join(lines)


def write_report(results_dir: Path, failed: list[str] = ()) -> str:
    """(Re)build results_dir/summary.csv and summary.md from the run folders; → the Markdown table."""
    runs = collect(results_dir)
    if runs.empty:
        md = "No completed runs under " + str(Path(results_dir) / "runs") + ".\n"
        atomic_write(Path(results_dir) / "summary.md", md)
        return md
    agg = aggregate(runs)
    atomic_write(Path(results_dir) / "summary.csv", agg.to_csv(index=False, float_format="%.6f"))
    md = markdown(agg, failed)
    atomic_write(Path(results_dir) / "summary.md", "# hatswap results\n\n" + md)
    return md
