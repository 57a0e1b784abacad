"""Aggregate report over run folders: tables (CSV, Markdown, LaTeX/booktabs), figures and a REPORT.md page.

Main table, one row per (stream, strategy): ACC, BWT, forgetting, FWT and training seconds per run, each
mean ± sample std (ddof = 1) over seeds; with a single seed the std is blank. BWT / forgetting / FWT are N/A for
joint training (one evaluation row), never 0. The best value of each column within a stream is marked (bold):
highest ACC, BWT and FWT, lowest forgetting and training time.

Per-task table, one row per (stream, strategy, task j), each in task j's own units (accuracy, mIoU, mAP@0.5,
top-1): R[T−1][j] (final score) vs R[j][j] (score just after task j was trained), their difference (task j's
BWT term) and task j's forgetting max_{j≤l<T−1} R[l][j] − R[T−1][j]. Where the stream has single-task baseline
runs (strategy `single_task`: task j trained alone, same budget), also R normalised by the baseline,
final / baseline_j, and the relative drop 100·(baseline_j − final)/baseline_j in % (the dense suite's objective: < 5);
baseline_j is the same seed's R[j][j] of `single_task` (the mean over its seeds when that seed is missing).
All mean ± std over seeds.

Budget columns of the main table: parameters of the trained model and inference latency in ms per image at
batch size 1 on the device used (summary.json's `budget`), next to training seconds.

Files written into the output folder (default: the results folder itself):
    summary.csv / .md / .tex     the main table (CSV holds the raw numbers)
    per_task.csv / .md / .tex    the per-task table
    figures/<stream>_strategies.png, figures/<stream>_<strategy>_R.png (seed-mean R with ± std)
    paired.csv                   every strategy minus naive and minus the best, paired by seed: mean, 95 %
                                 interval, p and Holm's p (benchmark/outputs/paired_stats.py)
    figures/ranks_cd.png         with two or more streams: the average ranks' critical-difference diagram
    REPORT.md                    both tables and links to every figure and file; where runs name published
                                 numbers (`--published`), those beside the measured ones
                                 (benchmark/outputs/published.py)
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.outputs import paired_stats, plots
from benchmark.outputs.metrics import ci95_halfwidth, task_forgetting
from benchmark.outputs.published import comparison
from benchmark.outputs.results import atomic_write, read_run
from benchmark.outputs.run_lock import remove_stale_report_temps, report_temp_prefix

METRICS = ("acc", "bwt", "forgetting", "fwt")
COLUMNS = (*METRICS, "train_wall_s", "latency_ms")
LABELS = {"acc": "ACC", "bwt": "BWT", "forgetting": "Forgetting", "fwt": "FWT", "train_wall_s": "train s/run",
          "latency_ms": "ms/image"}
# FWT is not ranked: with one head per task, R[j−1][j] is an untrained head's score, so FWT measures its noise.
BEST = {"acc": "max", "bwt": "max", "forgetting": "min", "train_wall_s": "min", "latency_ms": "min"}
# A class-IL run (benchmark/harness/scenarios.py) is two rows: its stream `<stream>-class-il` and this view of it, the
# task-IL scores of the same run (each task's logits masked to its own classes), so both get tables and heatmaps.
TASK_IL_VIEW = ".task-il"
BASELINE = "single_task"  # runs written before summaries said "baseline": this strategy's were the baselines
# The dense suite's objectives, judged (pass / fail, on the mean over seeds) on streams that have single-task baselines.
TARGETS = {"drop_pct": 5.0, "latency_ms": 150.0}  # < 5 % drop vs the baseline; < 150 ms per image at batch 1
NOTE = ("Mean ± sample std over seeds; best per column in bold (FWT is not ranked: with one head per task it "
        "measures an untrained head's noise). ACC = mean final score; BWT < 0 and forgetting > 0 mean forgetting; "
        "n/a = undefined (joint training has no sequence).")


def collect(results_dir: Path) -> pd.DataFrame:
    """One row per complete run folder (`results.read_run`, the check a rerun uses); the others are named on
    stderr and listed in `.attrs["incomplete"]` as (folder, what is wrong)."""
    rows, incomplete = [], []
    for path in sorted(p / "summary.json" for p in Path(results_dir).glob("runs/*/*/seed*") if p.is_dir()):
        files, why = read_run(path.parent)
        try:
            if why:
                raise ValueError(why)
            s, (tasks, labels, R) = files.summary, files.matrix
            row = {"stream": s["stream"], "strategy": s["strategy"], "seed": s["seed"],
                   "baseline": bool(s.get("baseline", s["strategy"] == BASELINE))}
        except (KeyError, TypeError, ValueError) as e:
            why = why or f"{type(e).__name__}: {e}"
            print(f"[report] skipping {path.parent}: {why}", file=sys.stderr)
            incomplete.append((str(path.parent), why))
            continue
        budget = s.get("budget") or {}
        rows.append(row | {m: s.get(m) for m in METRICS} | {
            "train_wall_s": s.get("train_wall_s"), "latency_ms": budget.get("latency_ms_per_image"),
            "params": budget.get("params"),
            "backbone_weights": s.get("backbone_weights"), "data_source": s.get("data_source"),
            "training": s.get("training"), "references": s.get("references"),
            "published": files.record["config"].get("published", ""),
            "tasks": tasks, "row_labels": labels, "R": R, "folder": str(path.parent)})
        if view := s.get("task_il"):  # a class-IL run's task-IL R (logits masked to each task's classes)
            rows.append(rows[-1] | {m: view.get(m) for m in METRICS} | {
                "stream": f"{s['stream']}{TASK_IL_VIEW}", "R": [view["eval_score"][label] for label in labels]})
    runs = pd.DataFrame(rows, columns=["stream", "strategy", "seed", "baseline", *COLUMNS, "params", "backbone_weights",
                                       "data_source", "training", "references", "published", "tasks", "row_labels",
                                       "R", "folder"])
    runs.attrs["incomplete"] = incomplete
    return runs


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.astype({c: float for c in COLUMNS})  # None → NaN
    g = runs.groupby(["stream", "strategy"], sort=True)
    out = g[list(COLUMNS)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out.insert(0, "n_seeds", g.size())
    for m in COLUMNS:  # 95 % t-interval of the mean: mean ± this
        out[f"{m}_ci95"] = ci95_halfwidth(out[f"{m}_std"], g[m].count())
    out["baseline"] = g["baseline"].all()
    out["seeds"] = g["seed"].apply(lambda s: " ".join(map(str, sorted(s))))
    out["backbone_weights"] = g["backbone_weights"].apply(lambda s: "; ".join(sorted(set(map(str, s)))))
    out["data_source"] = g["data_source"].apply(lambda s: "; ".join(sorted(set(map(str, s)))))
    out["training"] = g["training"].apply(lambda s: "; ".join(sorted(set(map(str, s.dropna())))) or "not recorded")
    return out.reset_index()


def _references(runs: pd.DataFrame) -> dict:
    """(stream, task) → (mean score over the baseline runs' seeds, name) of the task's trivial reference."""
    found = {}
    for _, r in runs[runs["baseline"].astype(bool)].iterrows():
        for task, ref in (r.get("references") or {}).items():
            found.setdefault((r["stream"], task), []).append(ref)
    return {k: (float(np.mean([v["score"] for v in refs])), refs[0]["name"]) for k, refs in found.items()}


def _baselines(runs: pd.DataFrame) -> dict:
    """(stream, seed) → the single-task baselines R[j][j]; (stream, None) → their mean over seeds."""
    out = {}
    for stream, df in runs[runs["baseline"].astype(bool)].groupby("stream"):
        diags = {r["seed"]: np.diag(np.asarray(r["R"])[1:]) for _, r in df.iterrows()}
        out |= {(stream, seed): d for seed, d in diags.items()}
        out[(stream, None)] = np.mean(list(diags.values()), axis=0)
    return out


def per_task(runs: pd.DataFrame) -> pd.DataFrame:
    """(stream, strategy, task) → final = R[T−1][j], just_trained = R[j][j], change = final − just_trained,
    forgetting_j, and where baselines exist: baseline_j, normalised = final / baseline_j, drop_pct."""
    rows, base, refs = [], _baselines(runs), _references(runs)
    for _, r in runs.iterrows():
        R, sequential = np.asarray(r["R"])[1:], r["row_labels"][1:] != ["after_joint"]  # row 0 is "init"
        square = sequential and R.shape[0] == R.shape[1]
        b = base.get((r["stream"], r["seed"]), base.get((r["stream"], None)))
        forgetting = task_forgetting(R) if square else []
        for j, task in enumerate(r["tasks"]):
            just = R[j, j] if square else np.nan
            forgot = forgetting[j] if j < len(forgetting) else np.nan
            if r["baseline"]:
                just, forgot, final = R[j, j], np.nan, R[j, j]  # a baseline's "final" on task j is its R[j][j]
            else:
                final = R[-1, j]
            bj = b[j] if b is not None else np.nan
            norm = final / bj if bj and not np.isnan(bj) else np.nan
            ref, ref_name = refs.get((r["stream"], task), (np.nan, ""))
            rows.append({"stream": r["stream"], "strategy": r["strategy"], "seed": r["seed"], "task": task,
                         "final": final, "just_trained": just, "change": final - just, "forgetting": forgot,
                         "baseline": bj, "normalised": norm, "drop_pct": 100 * (1 - norm), "reference": ref,
                         "reference_name": ref_name, "is_baseline": bool(r["baseline"])})
    df = pd.DataFrame(rows)
    g = df.groupby(["stream", "strategy", "task"], sort=True)
    out = g[list(TASK_VALUES)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out.insert(0, "n_seeds", g.size())
    out["reference_name"] = g["reference_name"].first()
    out["is_baseline"] = g["is_baseline"].all()
    return out.reset_index()


TASK_VALUES = ("final", "just_trained", "change", "forgetting", "baseline", "normalised", "drop_pct", "reference")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "$": r"\$", "±": r"$\pm$", "<": "$<$", ">": "$>$"}


def tex_escape(text: str) -> str:
    """Plain text → LaTeX text mode (captions, names), in one pass so no replacement is escaped twice."""
    return re.sub("|".join(map(re.escape, _TEX)), lambda m: _TEX[m.group()], text)


def _pm(mean, std, tex: bool = False, digits: int = 3, sign: bool = True) -> str:
    if pd.isna(mean):
        return "n/a"
    m = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    if pd.isna(std):
        return f"${m}$" if tex else m
    return f"${m} \\pm {std:.{digits}f}$" if tex else f"{m} ± {std:.{digits}f}"


def _verdict(value: float, limit: float, tex: bool) -> str:
    """Pass / fail of a '< limit' objective, judged on the mean; blank when there is no value."""
    if pd.isna(value):
        return ""
    ok = value < limit
    return ("pass" if ok else "FAIL") if tex else ("✓" if ok else "✗")


def _best_mask(df: pd.DataFrame, metric: str) -> pd.Series:
    """Best value of a column among the strategies; single-task baselines are the reference, not contenders."""
    if metric not in BEST:
        return pd.Series(False, index=df.index)
    col = df[f"{metric}_mean"].astype(float).where(~df["baseline"].astype(bool))
    if col.notna().sum() < 2:  # nothing to compare against
        return pd.Series(False, index=df.index)
    best = col.max() if BEST[metric] == "max" else col.min()
    return np.isclose(col, best, rtol=0, atol=5e-4)  # ties at the printed precision are all best


def main_table(agg: pd.DataFrame, stream: str, tex: bool = False) -> pd.DataFrame:
    """Display cells (strings) of one stream's main table, best values marked."""
    df = agg[agg["stream"] == stream].reset_index(drop=True)
    bold = (lambda s: f"{{\\boldmath{s}}}") if tex else (lambda s: f"**{s}**")  # \boldmath: math is bold too
    out = pd.DataFrame({"strategy": df["strategy"].map(tex_escape if tex else str),
                        "seeds": df["n_seeds"].astype(str)})
    for m in COLUMNS:
        digits, sign = (1, False) if m in ("train_wall_s", "latency_ms") else (3, True)
        cells = [_pm(mu, sd, tex, digits, sign) for mu, sd in zip(df[f"{m}_mean"], df[f"{m}_std"], strict=True)]
        out[LABELS[m]] = [bold(c) if b else c for c, b in zip(cells, _best_mask(df, m), strict=True)]
    if df["baseline"].astype(bool).any():  # the dense suite's protocol: judge its latency objective
        limit = TARGETS["latency_ms"]
        out[f"< {limit:g} ms"] = [_verdict(v, limit, tex) for v in df["latency_ms_mean"]]
    return out


def task_table(pt: pd.DataFrame, stream: str, tex: bool = False) -> pd.DataFrame:
    df = pt[pt["stream"] == stream].reset_index(drop=True)
    esc = tex_escape if tex else str

    def col(name, sign=False, digits=3):
        return [_pm(m, s, tex, digits, sign) for m, s in zip(df[f"{name}_mean"], df[f"{name}_std"], strict=True)]

    out = pd.DataFrame({"strategy": df["strategy"].map(esc), "task": df["task"].map(esc),
                        "seeds": df["n_seeds"].astype(str), "final": col("final"),
                        "just trained": col("just_trained"), "change": col("change", sign=True),
                        "forgetting": col("forgetting", sign=True)})
    if df["baseline_mean"].notna().any():
        out["final / baseline"] = col("normalised")
        out["drop % vs baseline"] = col("drop_pct", sign=True, digits=1)
        out[f"drop < {TARGETS['drop_pct']:g} %"] = [
            "" if base else _verdict(v, TARGETS["drop_pct"], tex)
            for v, base in zip(df["drop_pct_mean"], df["is_baseline"], strict=True)]
    if df["reference_mean"].notna().any():  # beside the baselines: what raw-pixel nearest neighbours score
        short = {"": ""} | {n: n.split(" on ")[0] for n in df["reference_name"].dropna()}
        out["trivial reference"] = [f"{m:.3f} ({short[n]})" if base and not pd.isna(m) else ""
                                    for m, n, base in zip(df["reference_mean"], df["reference_name"].fillna(""),
                                                          df["is_baseline"], strict=True)]
    return out


def to_markdown(cells: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


def to_latex(cells: pd.DataFrame, caption: str, label: str) -> str:
    """booktabs (\\toprule/\\midrule/\\bottomrule) through pandas' Styler; cells are already LaTeX."""
    cells = cells.rename(columns=tex_escape)
    return cells.style.hide(axis="index").to_latex(hrules=True, caption=caption, label=label,
                                                   column_format="l" * 2 + "r" * (len(cells.columns) - 2),
                                                   position="t", position_float="centering")


def _provenance(agg: pd.DataFrame, stream: str) -> str:
    df = agg[agg["stream"] == stream]
    return (f"Data: {'; '.join(sorted(set(df['data_source'])))}. "
            f"Backbone weights: {'; '.join(sorted(set(df['backbone_weights'])))}. "
            f"Training: {' | '.join(sorted(set(df['training'])))}.")


def intervals(agg: pd.DataFrame, stream: str, metric: str = "bwt") -> str:
    """One line: each strategy's 95 % t-interval of the mean of `metric`, and whether it excludes 0."""
    df = agg[(agg["stream"] == stream) & agg[f"{metric}_ci95"].notna()]
    if df.empty:
        return ""
    parts = []
    for _, r in df.iterrows():
        lo, hi = r[f"{metric}_mean"] - r[f"{metric}_ci95"], r[f"{metric}_mean"] + r[f"{metric}_ci95"]
        where = "below 0" if hi < 0 else "above 0" if lo > 0 else "includes 0"
        parts.append(f"{r['strategy']} [{lo:+.3f}, {hi:+.3f}] ({where})")
    return (f"95 % t-intervals of the mean {LABELS[metric]} over seeds (t_0.975,n−1 · std/√n): "
            + "; ".join(parts) + ".")


def markdown(agg: pd.DataFrame, failed: list[str] = ()) -> str:
    lines = []
    for stream in sorted(agg["stream"].unique()):
        lines += [f"### {stream}", "", to_markdown(main_table(agg, stream)), "",
                  f"{_provenance(agg, stream)} {NOTE}", "", intervals(agg, stream), ""]
    if failed:
        lines += ["**Failed runs** (no results written):", "", *[f"- {f}" for f in failed], ""]
    return "\n".join(lines)


def _figures(runs: pd.DataFrame, agg: pd.DataFrame, out: Path) -> dict[str, list[Path]]:
    figs: dict[str, list[Path]] = {}
    for stream in sorted(agg["stream"].unique()):
        figs[stream] = [plots.strategy_comparison(agg, stream, out / "figures" / f"{stream}_strategies.png")]
        for strategy, df in runs[runs["stream"] == stream].groupby("strategy", sort=True):
            Rs = np.array(df["R"].tolist())  # seeds × rows × tasks (same shape within one stream × strategy)
            std = Rs.std(axis=0, ddof=1) if len(Rs) > 1 else None
            first = df.iloc[0]
            figs[stream].append(plots.heatmap(
                Rs.mean(axis=0), first["row_labels"], first["tasks"], out / "figures" / f"{stream}_{strategy}_R.png",
                title=f"{stream}/{strategy}: R, mean{' ± std' if std is not None else ''} over {len(Rs)} seed(s)",
                std=std))
    return figs


# Everything write_report writes into its output folder: replaced as a whole, never mixed with an older report.
REPORT_FILES = ("REPORT.md", "summary.csv", "summary.md", "summary.tex", "per_task.csv", "per_task.md",
                "per_task.tex", "paired.csv", "figures")


def write_report(results_dir: Path, failed: list[str] = (), out_dir: Path | None = None) -> str:
    """(Re)build every table, figure and REPORT.md from results_dir/runs into out_dir; → the Markdown table.
    Built in a temporary folder, then moved in: each file replaces its namesake and the report files this build
    did not write (e.g. every table when no run is complete) are removed, so no number of an older report stays.
    runs/ is never touched."""
    out = Path(out_dir or results_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_report_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=report_temp_prefix(), dir=out))
    try:
        md = _write_report_files(results_dir, failed, tmp)
        for name in sorted(set(REPORT_FILES) | {p.name for p in tmp.iterdir()}):
            new, old = tmp / name, out / name
            if old.is_dir():  # figures/: moved aside whole, so figures of runs now gone do not linger
                os.replace(old, tmp / f".{name}.old")
            if new.exists():
                os.replace(new, old)
            else:
                old.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return md


def _not_in_the_tables(runs: pd.DataFrame, failed) -> list[str]:
    """REPORT.md's sections on the runs of the batch that failed and on incomplete run folders."""
    page, folders = [], runs.attrs.get("incomplete", [])
    if folders:
        page += ["## Incomplete run folders (not in the tables; a rerun redoes them)", "",
                 *[f"- `{folder}`: {why}" for folder, why in folders], ""]
    if failed:
        page += ["## Failed runs (no results written)", "", *[f"- {f}" for f in failed], ""]
    return page


def _write_report_files(results_dir: Path, failed, out: Path) -> str:
    runs = collect(results_dir)
    if runs.empty:
        md = "No completed runs under " + str(Path(results_dir) / "runs") + ".\n"
        atomic_write(out / "summary.md", md)
        atomic_write(out / "REPORT.md", "\n".join(["# hatswap report", "", md, *_not_in_the_tables(runs, failed)]))
        return md
    agg, pt = aggregate(runs), per_task(runs)
    atomic_write(out / "summary.csv", agg.to_csv(index=False, float_format="%.6f"))
    atomic_write(out / "per_task.csv", pt.to_csv(index=False, float_format="%.6f"))
    paired = paired_stats.paired_table(runs)
    atomic_write(out / "paired.csv", paired.to_csv(index=False, float_format="%.6g"))
    md = markdown(agg, failed)
    atomic_write(out / "summary.md", "# hatswap results\n\n" + md)
    streams = sorted(agg["stream"].unique())
    tex_main, tex_task, md_task = [], [], []
    for stream in streams:
        tex_main.append(to_latex(main_table(agg, stream, tex=True), tex_escape(f"{stream}: {NOTE}"), f"tab:{stream}"))
        tex_task.append(to_latex(task_table(pt, stream, tex=True), tex_escape(
            f"{stream}: final score R[T-1][j] vs the score just after training task j, R[j][j], and the change "
            "(mean ± std over seeds)"), f"tab:{stream}-tasks"))
        md_task += [f"### {stream}", "", to_markdown(task_table(pt, stream)), ""]
    atomic_write(out / "summary.tex", "% needs \\usepackage{booktabs}\n" + "\n".join(tex_main))
    atomic_write(out / "per_task.tex", "% needs \\usepackage{booktabs}\n" + "\n".join(tex_task))
    atomic_write(out / "per_task.md", "# hatswap per-task scores\n\n" + "\n".join(md_task))
    figs = _figures(runs, agg, out)
    page = ["# hatswap report", "", f"{len(runs)} runs from `{Path(results_dir) / 'runs'}`. Tables: "
            "[summary.csv](summary.csv), [summary.md](summary.md), [summary.tex](summary.tex) (booktabs); "
            "[per_task.csv](per_task.csv), [per_task.md](per_task.md), [per_task.tex](per_task.tex).", ""]
    for stream in streams:
        page += [f"## {stream}", "", to_markdown(main_table(agg, stream)), "", f"{_provenance(agg, stream)} {NOTE}",
                 "", intervals(agg, stream), "", *paired_stats.report_section(stream, paired),
                 "Per task, in each task's own units: final = R[T-1][j]; just trained = R[j][j], the score right "
                 "after training task j; change = final − just trained (< 0: forgotten); forgetting = "
                 "max_{j≤l<T-1} R[l][j] − final. Where single-task baselines exist: final / baseline = final "
                 "divided by single_task's R[j][j], drop % = 100·(1 − that), judged against the dense suite's < 5 % "
                 "objective (on the mean); trivial reference = the task's metric for nearest neighbours on raw "
                 "pixels of its training images (k-NN vote for classes, the nearest image's mask or boxes "
                 "copied for segmentation / detection), no learning.", "",
                 to_markdown(task_table(pt, stream)), ""]
        page += [f"![{p.stem}](figures/{p.name})" for p in figs[stream]] + [""]
    page += paired_stats.ranks_section(runs, out) + comparison(runs) + _not_in_the_tables(runs, failed)
    atomic_write(out / "REPORT.md", "\n".join(page))
    return md
