"""The multi-task report: one row per experiment (mean over seeds) — train/val loss, every task's primary test
metric (and the reconstruction MSE), Δm and transfer gains vs the single-task baselines of the same trunk, the
network's parameter count (summary.json's `params`: sum(p.numel()) over the whole model), each task's unweighted
validation loss after the last epoch (CSV only: `val_loss_<task>`), the trivial references of
the data, the average of the tasks' primary metrics, unweighted and weighted by the experiment's fixed task weights
(`averages`) — as Markdown and CSV (which also holds each task's final validation score and the baselines each run was
compared with), the Pareto front over the multi-task experiments, plus the val-loss curves figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.mtl.pareto import front
from benchmark.mtl.plots import val_curves
from benchmark.mtl.registries import SCHEDULES, WEIGHTINGS
from benchmark.mtl.transfer import DELTA_M_CONVENTION, delta_m, is_baseline, transfer_gain, trunk_key
from benchmark.mtl.weightings.base import per_task_numbers
from benchmark.outputs.results import atomic_write, read_run


def collect(out_dir: Path) -> list[dict]:
    """One dict per complete run folder (`results.read_run`, the check a rerun uses): summary.json | {"config":
    config.json's config}; the others are named on stderr."""
    runs = []
    for folder in sorted(p for p in Path(out_dir).glob("mtl/runs/*/seed*") if p.is_dir()):
        files, why = read_run(folder)
        if why:
            print(f"[report] skipping {folder}: {why}", file=sys.stderr)
            continue
        runs.append(current_schema(files.summary) | {"config": files.record["config"]})
    return runs


def current_schema(s: dict) -> dict:
    """A summary.json written before the one schema (benchmark.outputs.results.SUMMARY_KEYS): its CL metrics nested
    under "cl", "final" a dict of every metric, "primary" where "metric_units" is now → today's keys."""
    if "cl" not in s:
        return s
    old = {k: v for k, v in s.items() if k not in ("cl", "final", "primary", "final_primary")}
    return old | dict.fromkeys(("acc", "bwt", "forgetting", "fwt")) | (s["cl"] or {}) | {
        "metric_units": s["primary"], "final_metrics": s["final"],
        "final": [s["final_primary"][t] for t in s["tasks"]]}


def _transfer(s: dict, task: str) -> tuple[float | None, bool]:
    """→ (the task's transfer metric in run s, lower is better); None for runs that predate `transfer_metric`."""
    spec = (s.get("transfer_metric") or {}).get(task)
    if spec is None:
        return None, False
    return s["final_metrics"].get(task, {}).get(spec["metric"]), bool(spec["lower_is_better"])


def baselines(runs: list[dict]) -> dict[tuple[str, str, int], dict]:
    """(trunk key, task, seed) → that task's single-task run of that trunk (equal weighting, joint schedule; the
    first by name if several)."""
    out = {}
    for s in sorted(runs, key=lambda r: r["name"]):
        if is_baseline(s["tasks"], s["weighting"], s["schedule"]):
            out.setdefault((trunk_key(s["config"]), s["tasks"][0], s["seed"]), s)
    return out


def _baseline_names(base: dict[str, dict | None]) -> str:
    """stl-*-<suffix> when every task's baseline follows the derived naming, else the names."""
    names = {t: b["name"] for t, b in base.items() if b}
    if not names:
        return ""
    rests = {n[len(f"stl-{t}"):] if n.startswith(f"stl-{t}") else None for t, n in names.items()}
    if len(rests) == 1 and None not in rests:
        return f"stl-*{rests.pop()}"
    return ", ".join(names.values())


def _dropout(c: dict) -> str:
    """The MLP's dropout ('0.2 single', '0.2 each') and the backbone's own (the conv trunk's: 'small_cnn 0.2
    each'), or 'none'."""
    backbone = c.get("backbone")
    parts = [(label + f"{c[p + 'dropout']:g} {'single' if c.get(p + 'dropout_at') == 'last' else 'each'}")
             for p, label in (("", ""), (f"{backbone}.", f"{backbone} ")) if c.get(p + "dropout")
             and c.get(p + "dropout_at") != "none"]
    return ", ".join(parts) or "none"


def _gains(s: dict, base: dict[str, dict | None]) -> tuple[dict[str, float | None], float | None]:
    """→ (transfer gain per task, Δm) of run s against its baselines (task → single-task run or None)."""
    metric = {t: _transfer(s, t) for t in s["tasks"]}
    mtl = {t: m for t, (m, _) in metric.items()}
    stl = {t: _transfer(b, t)[0] for t, b in base.items() if b}
    lower = frozenset(t for t, (_, low) in metric.items() if low)
    return {t: transfer_gain(mtl[t], stl.get(t), t in lower) for t in mtl}, delta_m(mtl, stl, lower)


def _row(s: dict, stl: dict, groups: dict) -> dict:
    c, single = s["config"], len(s["tasks"]) == 1
    base = {t: None if single else stl.get((trunk_key(c), t, s["seed"])) for t in s["tasks"]}
    gains, dm = _gains(s, base) if not single else (dict.fromkeys(s["tasks"]), None)
    final, primary = s["final_metrics"], s["metric_units"]
    scores = dict(zip(s["tasks"], s["final"], strict=True))
    return {
        "group": groups.get(s["name"], "stl" if single else ""), "experiment": s["name"],
        "seed": s["seed"], "architecture": s["architecture"], "weighting": s["weighting"],
        "weights": _fixed_weights(s["weighting"], c),
        "schedule": s["schedule"], "shared_layers": c.get("shared_layers"), "dropout": _dropout(c),
        "tasks": ",".join(s["tasks"]), "baselines": "" if single else _baseline_names(base) or "none",
        "train_loss": s["train_loss"], "val_loss": s["val_loss"],
        **scores, **averages(scores, task_weights(s["weighting"], c, s["tasks"])),
        "mse": final.get("reconstruction", {}).get("mse"), "psnr": final.get("reconstruction", {}).get("psnr"),
        **{f"gain_{t}": g for t, g in gains.items()}, "delta_m": dm,
        **{f"val_{t}": v.get(primary[t]) for t, v in (s.get("final_val") or {}).items()},
        # each task's own validation loss after the last epoch, unweighted: what the weighted val_loss mixes
        **{f"val_loss_{t}": v for t, v in (s["epochs"][-1]["val_loss"] if s.get("epochs") else {}).items()},
        "acc_cl": s["acc"] if _sequential(s) else None, "bwt": s["bwt"],
        "params": s.get("params"), "wall_s": s["total_wall_s"]}


def _fixed_weights(weighting: str, config: dict) -> str:
    """The user-given task weights of a weighting that declares them (`fixed_weights`: static's), as config.json
    holds them; "" for a weighting that computes its own."""
    knob = WEIGHTINGS.get(weighting).meta.fixed_weights
    return config.get(f"{weighting}.{knob}", "") if knob else ""


AVERAGES_NOTE = ("avg = (1/T) Σ_t M_t over the experiment's T tasks' primary test metrics M_t (the task columns, "
                 "all higher-is-better scores in [0, 1]); weighted avg = Σ_t w_t M_t / Σ_t w_t with w_t the "
                 "experiment's fixed task weights, the loss weights it was given (the weights column: static's "
                 "--static.weights), and w_t = 1 where its weighting computes its own (equal, uncertainty, DWA, "
                 "GradNorm, ...: weights that track loss scales, not the tasks' importance), so there the two agree.")


def task_weights(weighting: str, config: dict, tasks: list[str]) -> dict[str, float]:
    """w_t of the weighted average (AVERAGES_NOTE): the fixed weights a weighting declares (`fixed_weights`), in
    task order or name=value pairs as its flag takes them, a task left out (or an empty text) at 1; else all 1."""
    knob = WEIGHTINGS.get(weighting).meta.fixed_weights
    text = str(_fixed_weights(weighting, config) or "")
    given = per_task_numbers(text, tuple(tasks), f"--{weighting}.{knob}", "1,0.5,1") if text.strip() else {}
    return {t: float(given.get(t, 1.0)) for t in tasks}


def averages(scores: dict[str, float | None], weights: dict[str, float] | None) -> dict[str, float | None]:
    """→ {"avg": (1/T) Σ_t M_t, "weighted_avg": Σ_t w_t M_t / Σ_t w_t} over scores (task → M_t); None where a
    score is missing, the weights are None (no run: a trivial reference) or sum to 0."""
    values = list(scores.values())
    if not values or any(v is None for v in values):
        return {"avg": None, "weighted_avg": None}
    total = sum(weights.values()) if weights is not None else 0.0
    return {"avg": float(np.mean(values)),
            "weighted_avg": sum(weights[t] * v for t, v in scores.items()) / total if total > 0 else None}


def _sequential(s: dict) -> bool:
    """Whether run s trained its tasks one after another (a `continual` schedule, one evaluation per task after
    `init`): ACC is a CL one."""
    return SCHEDULES.get(s["schedule"]).meta.continual and len(s["evaluations"]) == len(s["tasks"]) + 1


def table(runs: list[dict], groups: dict[str, str] | None = None) -> pd.DataFrame:
    stl = baselines(runs)
    rows = [_row(s, stl, groups or {}) for s in runs]
    rows += _reference_rows(runs)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    order = {name: k for k, name in enumerate(groups or {})}  # the profile's order; other runs after, by name
    singles = {s["name"] for s in runs if len(s["tasks"]) == 1}  # the references go right after the last of them
    after_baselines = max((order.get(n, len(order)) for n in singles), default=-1) + 0.5

    def position(name: str):
        return (after_baselines if name.startswith(REFERENCE_PREFIX) else order.get(name, len(order)), name)

    df = df.sort_values("experiment", key=lambda c: c.map(position), kind="stable")
    keys = ["group", "experiment", "architecture", "weighting", "weights", "schedule", "shared_layers", "dropout",
            "tasks", "baselines"]
    num = [c for c in df.columns if c not in keys and c != "seed"]
    by_experiment = df.groupby(keys, sort=False, dropna=False)
    agg = by_experiment[num].agg(lambda v: v.astype(float).mean())
    agg["n_seeds"] = by_experiment["seed"].count()
    # the spread of Δm over seeds (sample standard deviation; NaN for one seed): is a difference more than noise?
    agg["delta_m_sd"] = by_experiment["delta_m"].agg(lambda v: v.astype(float).std(ddof=1))
    return agg.reset_index()


REFERENCE_PREFIX = "reference: "
REFERENCE_GROUP = "trivial references (computed from the data, no training; test split)"


def _data_key(config: dict) -> str:
    prefix = f"{config.get('task_set')}."
    return json.dumps({k: v for k, v in config.items() if k == "task_set" or k.startswith(prefix)}, sort_keys=True)


def _reference_rows(runs: list[dict]) -> list[dict]:
    """One row per trivial reference (benchmark/mtl/references.py) and seed. Each run holds the references of its
    own tasks on its data; runs on the same data and seed agree, so their tasks are merged."""
    several = len({_data_key(s["config"]) for s in runs}) > 1
    merged: dict[tuple[str, int], dict] = {}  # (data, seed) → {reference: {task: scores}}
    primary: dict[str, str] = {}
    for s in sorted(runs, key=lambda r: r["name"]):
        refs = s.get("references") or {}
        primary |= refs.get("primary", {})
        for ref, per_task in refs.get("test", {}).items():
            merged.setdefault((_data_key(s["config"]), s["seed"]), {}).setdefault(ref, {}).update(per_task)
    rows = []
    for (data, seed), by_ref in merged.items():
        for ref, per_task in by_ref.items():
            rec = per_task.get("reconstruction", {})
            rows.append({"group": REFERENCE_GROUP, "experiment": REFERENCE_PREFIX + ref + (f" {data}" if several
                                                                                          else ""),
                         "seed": seed, "architecture": "", "weighting": "", "weights": "", "schedule": "",
                         "shared_layers": None, "dropout": "", "tasks": ",".join(per_task), "baselines": "",
                         **{t: v.get(primary[t]) for t, v in per_task.items()},
                         **averages({t: v.get(primary[t]) for t, v in per_task.items()}, None),
                         "mse": rec.get("mse"), "psnr": rec.get("psnr")})
    return rows


TASK_COLS = {"classes": "classes acc", "coarse": "coarse acc", "reconstruction": "recon score", "mse": "recon MSE",
             "psnr": "PSNR dB", "random": "random acc"}


def task_columns(df: pd.DataFrame) -> list[str]:
    """The score columns: the multi-task set's named ones (TASK_COLS) in their order, then any other task set's tasks
    (dense_tasks: seg, det, cls) in the order the runs list them; headed by the task name."""
    others = dict.fromkeys(t for tasks in df["tasks"] for t in str(tasks).split(",") if t and t not in TASK_COLS)
    return [c for c in TASK_COLS if c in df.columns] + [t for t in others if t in df.columns]


def metric_note(runs: list[dict]) -> str:
    """'' for the multi-task set's tasks (TASK_COLS say their metric); else which metric each other task column is."""
    units = {t: m for s in runs for t, m in s.get("metric_units", {}).items() if t not in TASK_COLS}
    return f"Task columns: {', '.join(f'{t} = {m}' for t, m in units.items())} (each kind's primary metric).\n" \
        if units else ""


def _fmt(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{100 * v:+.1f}%" if pct else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def _delta_m_cell(r) -> str:
    """Δm, with ± its sample standard deviation over seeds where there are several."""
    cell, sd = _fmt(r.get("delta_m"), pct=True), r.get("delta_m_sd")
    return f"{cell} ± {100 * sd:.1f}" if (r.get("n_seeds") or 0) > 1 and sd is not None and sd == sd else cell


def markdown(df: pd.DataFrame) -> str:
    cols = ["experiment", "architecture", "weighting", "weights", "schedule", "shared_layers", "dropout",
            "train_loss", "val_loss", *task_columns(df), "avg", "weighted_avg", "delta_m",
            "params", "wall_s"]
    head = {"shared_layers": "shared", "train_loss": "train loss", "val_loss": "val loss", "delta_m": "Δm",
            "weighted_avg": "weighted avg",
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
                    cells.append(_delta_m_cell(r))
                elif c == "wall_s":
                    cells.append(_fmt(v) if v != v else f"{v:.0f}")
                elif c == "params":  # the network's trainable and frozen parameters, sum(p.numel())
                    cells.append(_fmt(v) if v is None or v != v else f"{v:,.0f}")
                elif c == "mse" and isinstance(v, float) and v == v:
                    cells.append(f"{v:.4f}")
                elif c == "shared_layers":  # a float column once reference rows (no network) join
                    cells.append(_fmt(v) if v is None or v != v else f"{v:.0f}")
                elif isinstance(v, float):
                    cells.append(_fmt(v))
                else:
                    cells.append(str(v) if v not in (None, "") else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def gains_markdown(df: pd.DataFrame) -> str:
    """Transfer gain per task, (−1)^l_t (M_t − M_STL,t)/M_STL,t, for every multi-task experiment, and which
    single-task runs it was compared with."""
    tasks = [c[len("gain_"):] for c in df.columns if c.startswith("gain_")]
    # single-task runs are the baselines themselves; reference rows are no runs
    part = df[df["tasks"].str.contains(",") & ~df["experiment"].str.startswith(REFERENCE_PREFIX)]
    lines = ["| experiment | " + " | ".join(f"{t} gain" for t in tasks) + " | Δm | baselines |",
             "|" + "---|" * (len(tasks) + 3)]
    for _, r in part.iterrows():
        lines.append(f"| {r['experiment']} | " + " | ".join(_fmt(r.get(f"gain_{t}"), pct=True) for t in tasks) +
                     f" | {_delta_m_cell(r)} | {r.get('baselines') or '–'} |")
    return "\n".join(lines) + "\n"



def _pareto(df: pd.DataFrame) -> tuple[list[str], dict[str, dict], dict[str, list[str]], list[str]]:
    """→ (task columns, experiment → {task: primary test metric}, experiment → what dominates it, the experiments
    on the front first, then the dominated, each by name) over the multi-task experiments of df."""
    part = df[df["tasks"].str.contains(",") & ~df["experiment"].str.startswith(REFERENCE_PREFIX)]
    tasks = [t for t in task_columns(df) if t not in ("mse", "psnr")]
    points = {r["experiment"]: {t: r[t] for t in r["tasks"].split(",") if r.get(t) == r.get(t)}
              for _, r in part.iterrows()}
    dominated_by = front(points, {})
    return tasks, points, dominated_by, sorted(points, key=lambda n: (bool(dominated_by[n]), n))


def pareto_markdown(df: pd.DataFrame) -> str:
    """The multi-task experiments on the Pareto front of their tasks' primary test metrics (all higher-is-better:
    accuracy, recon score; means over seeds) first, then the dominated ones with what dominates them
    (benchmark/mtl/pareto.py)."""
    tasks, points, dominated_by, order = _pareto(df)
    lines = ["| experiment | " + " | ".join(TASK_COLS.get(t, t) for t in tasks) + " | dominated by |",
             "|" + "---|" * (len(tasks) + 2)]
    for name in order:
        by = dominated_by[name]
        which = ", ".join(by[:3]) + (f" (+{len(by) - 3})" if len(by) > 3 else "") if by else "front"
        lines.append(f"| {name if by else f'**{name}**'} | " + " | ".join(_fmt(points[name].get(t)) for t in tasks) +
                     f" | {which} |")
    return "\n".join(lines) + "\n"


def pareto_table(df: pd.DataFrame) -> tuple[list[str], list[list]]:
    """pareto_markdown's table as (columns, rows) of plain values (wandb's summary run): a task an experiment
    was not scored on is None, `dominated_by` every dominating experiment, comma-separated."""
    tasks, points, dominated_by, order = _pareto(df)
    rows = [[name, *(None if points[name].get(t) is None else float(points[name][t]) for t in tasks),
             not dominated_by[name], ", ".join(dominated_by[name])] for name in order]
    return ["experiment", *tasks, "on_front", "dominated_by"], rows


def write_mtl_report(out_dir: Path, groups: dict[str, str] | None = None, failed=(), report_dir=None) -> str:
    """The report over out_dir/mtl/runs, written into report_dir/mtl (default: out_dir/mtl); → its Markdown."""
    out = Path(report_dir or out_dir) / "mtl"
    runs = collect(out_dir)
    df = table(runs, groups)
    if df.empty:
        return "[report] no completed mtl experiments"
    atomic_write(out / "summary.csv", df.to_csv(index=False))
    text = ("Test metrics per task (accuracy, recon score, PSNR: higher is better; recon MSE: lower is better); "
            "train/val loss = the weighted objective Σ w_t L_t of the last epoch (val with the same weights); Δm "
            "vs the single-task (stl) runs of the same trunk; rows over several seeds show their mean, and Δm ± its "
            "sample standard deviation over the seeds.\n"
            f"{metric_note(runs)}{AVERAGES_NOTE}\n{DELTA_M_CONVENTION}\n\n" + markdown(df) +
            "\n**transfer gain per task vs single-task**\n\n" +
            gains_markdown(df) + "\n**Pareto front** (no other experiment is at least as good on every shared task "
            "and better on one; bold = on the front)\n\n" + pareto_markdown(df))
    if failed:
        text += "\nFailed experiments:\n" + "\n".join(f"- {f}" for f in failed) + "\n"
    atomic_write(out / "summary.md", text)
    curves = {s["name"]: [e["val_total"] for e in s["epochs"]] for s in runs if s["seed"] == min(
        r["seed"] for r in runs)}
    val_curves(curves, out / "val_curves.png", title="weighted validation loss per epoch")
    return text
