"""The multi-task report: one row per experiment (mean over seeds) — train/val loss, every task's primary test
metric, Δm and transfer gains vs the single-task baselines — as Markdown and CSV, plus the val-loss curves figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.mtl.plots import val_curves
from benchmark.mtl.transfer import DELTA_M_CONVENTION, delta_m, transfer_gain
from benchmark.results import atomic_write


def collect(out_dir: Path) -> list[dict]:
    runs = []
    for path in sorted(Path(out_dir).glob("mtl/runs/*/seed*/summary.json")):
        try:
            s = json.loads(path.read_text())
            cfg = json.loads((path.parent / "config.json").read_text())["config"]
            runs.append(s | {"config": cfg})
        except (OSError, json.JSONDecodeError, KeyError) as e:
            print(f"[report] skipping unreadable {path.parent}: {type(e).__name__}: {e}", file=sys.stderr)
    return runs


def baselines(runs: list[dict]) -> dict[tuple[str, int], float]:
    """(task, seed) → the primary test metric of that task's single-task run (the first by name)."""
    out = {}
    for s in sorted(runs, key=lambda r: r["name"]):
        if len(s["tasks"]) == 1 and s["schedule"] != "sequential":
            out.setdefault((s["tasks"][0], s["seed"]), s["final_primary"][s["tasks"][0]])
    return out


def table(runs: list[dict], groups: dict[str, str] | None = None) -> pd.DataFrame:
    stl = baselines(runs)
    rows = []
    for s in runs:
        c = s["config"]
        base = {t: stl.get((t, s["seed"])) for t in s["tasks"]}
        single = len(s["tasks"]) == 1
        rows.append({
            "group": (groups or {}).get(s["name"], "stl" if single else ""), "experiment": s["name"],
            "seed": s["seed"], "architecture": s["architecture"], "weighting": s["weighting"],
            "weights": c.get("static.weights", "") if s["weighting"] == "static" else "",
            "schedule": s["schedule"], "shared_layers": c.get("shared_layers"),
            "dropout": "none" if not c.get("dropout") or c.get("dropout_at") == "none" else
            f"{c['dropout']:g} {'single' if c.get('dropout_at') == 'last' else 'each'}",
            "tasks": ",".join(s["tasks"]), "train_loss": s["train_loss"], "val_loss": s["val_loss"],
            **{f"{t}": s["final_primary"].get(t) for t in s["tasks"]},
            "psnr": s["final"].get("reconstruction", {}).get("psnr"),
            **{f"gain_{t}": None if single or base[t] is None else transfer_gain(s["final_primary"][t], base[t])
               for t in s["tasks"]},
            "delta_m": None if single else delta_m(s["final_primary"], {t: v for t, v in base.items() if v}),
            "acc_cl": (s.get("cl") or {}).get("acc"), "bwt": (s.get("cl") or {}).get("bwt"),
            "wall_s": s["total_wall_s"]})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    order = {name: k for k, name in enumerate(groups or {})}  # the profile's order; other runs after, by name
    df = df.sort_values("experiment", key=lambda c: c.map(lambda n: (order.get(n, len(order)), n)), kind="stable")
    keys = ["group", "experiment", "architecture", "weighting", "weights", "schedule", "shared_layers", "dropout",
            "tasks"]
    num = [c for c in df.columns if c not in keys and c != "seed"]
    agg = df.groupby(keys, sort=False, dropna=False)[num].agg(lambda v: v.astype(float).mean())
    agg["n_seeds"] = df.groupby(keys, sort=False, dropna=False)["seed"].count()
    return agg.reset_index()


TASK_COLS = {"classes": "classes acc", "coarse": "coarse acc", "reconstruction": "recon score", "psnr": "PSNR dB",
             "random": "random acc"}


def _fmt(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{100 * v:+.1f}%" if pct else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def markdown(df: pd.DataFrame) -> str:
    cols = ["experiment", "architecture", "weighting", "weights", "schedule", "shared_layers", "dropout",
            "train_loss", "val_loss", *[c for c in TASK_COLS if c in df.columns], "delta_m", "wall_s"]
    head = {"shared_layers": "shared", "train_loss": "train loss", "val_loss": "val loss", "delta_m": "Δm",
            "wall_s": "s"} | TASK_COLS
    lines = []
    for group, part in df.groupby("group", sort=False):
        lines += [f"**{group or 'experiments'}**", "", "| " + " | ".join(head.get(c, c) for c in cols) + " |",
                  "|" + "---|" * len(cols)]
        for _, r in part.iterrows():
            cells = []
            for c in cols:
                v = r.get(c)
                if c == "delta_m":
                    cells.append(_fmt(v, pct=True))
                elif c == "wall_s":
                    cells.append(f"{v:.0f}")
                elif isinstance(v, float):
                    cells.append(_fmt(v))
                else:
                    cells.append(str(v) if v not in (None, "") else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def gains_markdown(df: pd.DataFrame) -> str:
    """Transfer gain per task, (M_t − M_STL,t)/M_STL,t, for every multi-task experiment."""
    tasks = [c[len("gain_"):] for c in df.columns if c.startswith("gain_")]
    part = df[df["tasks"].str.contains(",")]  # single-task runs are the baselines themselves
    lines = ["| experiment | " + " | ".join(f"{t} gain" for t in tasks) + " | Δm |", "|" + "---|" * (len(tasks) + 2)]
    for _, r in part.iterrows():
        lines.append(f"| {r['experiment']} | " + " | ".join(_fmt(r.get(f"gain_{t}"), pct=True) for t in tasks) +
                     f" | {_fmt(r.get('delta_m'), pct=True)} |")
    return "\n".join(lines) + "\n"


def write_mtl_report(out_dir: Path, groups: dict[str, str] | None = None, failed=()) -> str:
    out = Path(out_dir) / "mtl"
    runs = collect(out_dir)
    df = table(runs, groups)
    if df.empty:
        return "[report] no completed mtl experiments"
    atomic_write(out / "summary.csv", df.to_csv(index=False))
    text = ("Test metrics (primary, higher is better) per task; train/val loss = the weighted objective Σ w_t L_t "
            "of the last epoch (val with the same weights); Δm vs the single-task (stl) runs.\n"
            f"{DELTA_M_CONVENTION}\n\n" + markdown(df) + "\n**transfer gain per task vs single-task**\n\n" +
            gains_markdown(df))
    if failed:
        text += "\nFailed experiments:\n" + "\n".join(f"- {f}" for f in failed) + "\n"
    atomic_write(out / "summary.md", text)
    curves = {s["name"]: [e["val_total"] for e in s["epochs"]] for s in runs if s["seed"] == min(
        r["seed"] for r in runs)}
    val_curves(curves, out / "val_curves.png", title="weighted validation loss per epoch")
    return text
