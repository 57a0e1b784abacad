"""Published numbers a profile sets out to reproduce, shown in the report beside the measured ones.

A file `benchmark/published/<name>.json` holds them with their source; a run names it with `--published <name>`
(a profile sets it), config.json records the name, and the report adds, for every stream whose runs name one, a
table of the published final scores (R[T−1][j], task by task in the stream's order; null where the source prints
none) beside the measured mean ± std over seeds, strategy by strategy; strategies the file has no numbers for are
listed as beyond the source. File format:

    {"title": …, "source": …, "setting": …, "metric": …,
     "final": {"<strategy>": {"from": "where in the source", "scores": [task 0, task 1, …]}}}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.errors import UserError

PUBLISHED_DIR = Path(__file__).parents[1] / "published"  # beside profiles/ and tuned/: data, not code


def load_published(name: str) -> dict:
    path = PUBLISHED_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PUBLISHED_DIR.glob("*.json")))
        raise UserError(f"--published {name}: no file {path}; known: {known}")
    data = json.loads(path.read_text())
    if not isinstance(data.get("final"), dict) or not all(isinstance(v.get("scores"), list)
                                                          for v in data["final"].values()):
        raise UserError(f"{path}: expected \"final\": {{strategy: {{\"from\": …, \"scores\": [...]}}}}")
    return data


def _cell(values: list) -> str:
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")


def comparison(runs) -> list[str]:
    """REPORT.md lines: per (stream, published name) among the runs (a DataFrame from report.collect with a
    `published` column), the published final scores beside the measured ones; [] when no run names a file."""
    lines = []
    named = runs[runs["published"].astype(bool)]
    for (stream, name), df in named.groupby(["stream", "published"], sort=True):
        try:
            data, tasks = load_published(name), df.iloc[0]["tasks"]
        except UserError as e:  # a file removed since the runs: the rest of the report still stands
            lines += [f"Published numbers {name!r} named by the {stream} runs: {e}", ""]
            continue
        lines += [f"## {stream}: published numbers beside the measured ({name})", "",
                  f"{data.get('title', name)}; source: {data.get('source', '?')}. Setting: {data.get('setting', '?')}."
                  f" Metric: {data.get('metric', 'final score')}. Measured: final score R[T−1][j], mean ± std over "
                  "seeds.", "", "| strategy | row | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
        for strategy, ref in data["final"].items():
            scores = list(ref["scores"]) + [None] * (len(tasks) - len(ref["scores"]))
            lines.append(f"| {strategy} | published ({ref.get('from', '')}) | "
                         + " | ".join("not printed" if s is None else f"{s:.3f}" for s in scores[:len(tasks)]) + " |")
            mine = df[df["strategy"] == strategy]
            finals = [np.asarray(R)[-1] for R in mine["R"]]
            lines.append(f"| {strategy} | measured ({len(finals)} seed{'s' * (len(finals) != 1)}) | "
                         + " | ".join(_cell([f[j] for f in finals]) for j in range(len(tasks))) + " |")
        beyond = sorted(set(df["strategy"]) - set(data["final"]))
        if beyond:
            lines += ["", f"Beyond the source (no published number): {', '.join(beyond)}."]
        lines.append("")
    return lines
