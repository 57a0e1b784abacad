"""`hatswap report`: every table format and figure, with numbers checked against the runs' summary.json files."""

import json
import shutil
import struct
import subprocess

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.outputs.report import per_task, task_table, tex_escape
from benchmark.outputs.results import SUMMARY_KEYS


@pytest.fixture(scope="module")
def results(tmp_path_factory, fmnist_root):
    from tests.conftest import tiny_args

    out = tmp_path_factory.mktemp("report") / "results"
    for strategy in ("naive", "replay"):
        for seed in ("0", "1"):
            assert main(["run", *tiny_args(out, fmnist_root, "--strategy", strategy, "--seed", seed)]) == 0
    assert main(["report", str(out)]) == 0
    return out


def _summaries(results, strategy):
    return [json.loads(p.read_text()) for p in sorted(results.glob(f"runs/*/{strategy}/seed*/summary.json"))]


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_tables_agree_with_the_runs(results):
    table = pd.read_csv(results / "summary.csv").set_index("strategy")
    md, tex = (results / "summary.md").read_text(), (results / "summary.tex").read_text()
    for strategy in ("naive", "replay"):
        runs = _summaries(results, strategy)
        assert table.loc[strategy, "n_seeds"] == len(runs) == 2
        for key in ("acc", "bwt", "forgetting", "fwt", "train_wall_s"):
            values = np.array([s[key] for s in runs])
            assert table.loc[strategy, f"{key}_mean"] == pytest.approx(values.mean(), abs=1e-6)
            assert table.loc[strategy, f"{key}_std"] == pytest.approx(values.std(ddof=1), abs=1e-6)
        accs = np.array([s["acc"] for s in runs])
        cell = f"{accs.mean():+.3f} ± {accs.std(ddof=1):.3f}"
        assert cell in md and f"${accs.mean():+.3f} \\pm {accs.std(ddof=1):.3f}$" in tex

    per_task = pd.read_csv(results / "per_task.csv")
    runs = _summaries(results, "naive")
    assert all(set(SUMMARY_KEYS) <= set(s) for s in runs)  # the schema every kind of run writes
    for j, task in enumerate(runs[0]["tasks"]):
        row = per_task[(per_task.strategy == "naive") & (per_task.task == task)].iloc[0]
        assert row.final_mean == pytest.approx(np.mean([s["final"][j] for s in runs]), abs=1e-6)
        assert row.just_trained_mean == pytest.approx(np.mean([s["just_trained"][j] for s in runs]), abs=1e-6)
    assert (results / "per_task.md").read_text().count("| naive |") == 3


def test_best_value_per_column_is_marked(results):
    table = pd.read_csv(results / "summary.csv").set_index("strategy")
    md = (results / "summary.md").read_text()
    best = table["acc_mean"].idxmax()
    best_cell = f"**{table.loc[best, 'acc_mean']:+.3f} ± {table.loc[best, 'acc_std']:.3f}**"
    row = next(line for line in md.splitlines() if line.startswith(f"| {best} |"))
    assert best_cell in row
    other = next(s for s in table.index if s != best)
    if not np.isclose(table.loc[other, "acc_mean"], table.loc[best, "acc_mean"], atol=5e-4):
        assert f"**{table.loc[other, 'acc_mean']:+.3f}" not in md
    lowest_forgetting = table["forgetting_mean"].idxmin()
    row = next(line for line in md.splitlines() if line.startswith(f"| {lowest_forgetting} |"))
    assert f"**{table.loc[lowest_forgetting, 'forgetting_mean']:+.3f}" in row


def test_fwt_is_reported_but_never_ranked(results):
    table = pd.read_csv(results / "summary.csv").set_index("strategy")
    assert table["fwt_mean"].notna().all()  # kept in the CSV
    md = (results / "summary.md").read_text()
    for strategy in table.index:
        row = next(line for line in md.splitlines() if line.startswith(f"| {strategy} |"))
        assert f"**{table.loc[strategy, 'fwt_mean']:+.3f}" not in row.split(" | ")[5]  # the FWT cell, never bold


def test_confidence_intervals_are_t_based():
    from benchmark.outputs.metrics import ci95_halfwidth
    from benchmark.outputs.report import intervals

    # t_{0.975, 2} = 4.303, t_{0.975, 4} = 2.776 (tables); one run has no interval
    assert ci95_halfwidth([1.0, 1.0, 1.0], [3, 5, 1]) == pytest.approx([4.3027 / 3**0.5, 2.7764 / 5**0.5, np.nan],
                                                                     rel=1e-4, nan_ok=True)
    agg = pd.DataFrame({"stream": ["s", "s"], "strategy": ["naive", "lwf"], "bwt_mean": [-0.131, -0.035],
                        "bwt_ci95": [ci95_halfwidth(0.055, 3), ci95_halfwidth(0.010, 3)]})
    line = intervals(agg, "s")  # the old README's naive BWT −0.131 ± 0.055 over 3 seeds: ±0.137 includes 0
    assert "naive [-0.268, +0.006] (includes 0)" in line and "lwf [-0.060, -0.010] (below 0)" in line


def test_the_dense_suites_latency_objective_is_judged_where_the_stream_has_baselines():
    from benchmark.outputs.report import COLUMNS, main_table

    def agg(baseline):
        rows = {"stream": ["s", "s"], "strategy": ["fast", "slow"], "n_seeds": [3, 3], "baseline": [baseline, False]}
        rows |= {f"{m}_{stat}": [0.5, 0.5] for m in COLUMNS for stat in ("mean", "std")}
        return pd.DataFrame(rows).assign(latency_ms_mean=[12.0, 180.0])

    cells = main_table(agg(True), "s").set_index("strategy")
    assert cells.loc["fast", "< 150 ms"] == "✓" and cells.loc["slow", "< 150 ms"] == "✗"
    assert main_table(agg(True), "s", tex=True).iloc[1]["< 150 ms"] == "FAIL"
    assert "< 150 ms" not in main_table(agg(False), "s")  # no baselines: not the dense suite's protocol, not judged


def test_latex_is_booktabs_and_escaped(results):
    tex = (results / "summary.tex").read_text()
    assert tex.count("\\begin{tabular}") == 1
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in tex
    caption = next(line for line in tex.splitlines() if line.startswith("\\caption{"))
    assert caption.startswith("\\caption{binary\\_tasks: ") and "$<$ 0" in caption  # "BWT < 0"
    assert "±" not in tex
    assert tex_escape("a_b & 5% ± <x>") == "a\\_b \\& 5\\% $\\pm$ $<$x$>$"


def test_every_figure_is_written_and_linked(results):
    figures = {"binary_tasks_strategies.png", "binary_tasks_naive_R.png", "binary_tasks_replay_R.png"}
    assert {p.name for p in (results / "figures").iterdir()} == figures
    page = (results / "REPORT.md").read_text()
    for name in figures:
        w, h = _png_size(results / "figures" / name)
        assert w > 200 and h > 150 and f"(figures/{name})" in page
    for name in ("summary.csv", "summary.tex", "per_task.csv", "per_task.tex"):
        assert f"({name})" in page
    for run in results.glob("runs/*/*/seed*"):
        for name in ("heatmap.png", "task_curves.png", "losses.png"):
            assert _png_size(run / name)[0] > 200


def test_report_into_another_folder_leaves_the_results_alone(results, tmp_path):
    before = sorted(p.name for p in results.iterdir())
    assert main(["report", str(results), "--out", str(tmp_path / "ref")]) == 0
    assert sorted(p.name for p in results.iterdir()) == before
    assert (tmp_path / "ref" / "REPORT.md").is_file() and (tmp_path / "ref" / "figures").is_dir()
    assert not (tmp_path / "ref" / "runs").exists()


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (apt-get install texlive-latex-recommended)")
def test_latex_tables_compile(results, tmp_path):
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage[T1]{fontenc}\\usepackage{booktabs}\\begin{document}"
                   f"\\input{{{results / 'summary.tex'}}}\\input{{{results / 'per_task.tex'}}}\\end{{document}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_per_task_forgetting_and_drop_against_the_same_seeds_single_task_baseline():
    labels = ["init", "after_exp0", "after_exp1"]
    runs = pd.DataFrame([
        {"stream": "s", "strategy": "single_task", "baseline": True, "seed": 0, "tasks": ["a", "b"],
         "row_labels": labels, "R": [[0.0, 0.0], [0.8, 0.1], [0.2, 0.5]]},
        {"stream": "s", "strategy": "single_task", "baseline": True, "seed": 1, "tasks": ["a", "b"],
         "row_labels": labels, "R": [[0.0, 0.0], [0.4, 0.1], [0.2, 0.5]]},
        {"stream": "s", "strategy": "naive", "baseline": False, "seed": 0, "tasks": ["a", "b"], "row_labels": labels,
         "R": [[0.0, 0.0], [0.6, 0.0], [0.4, 0.6]]}])
    pt = per_task(runs).set_index(["strategy", "task"])
    a, b = pt.loc[("naive", "a")], pt.loc[("naive", "b")]
    assert a["baseline_mean"] == pytest.approx(0.8)  # seed 0's own baseline, not the mean 0.6 over seeds
    assert a["normalised_mean"] == pytest.approx(0.5) and a["drop_pct_mean"] == pytest.approx(50.0)
    assert b["normalised_mean"] == pytest.approx(1.2) and b["drop_pct_mean"] == pytest.approx(-20.0)
    assert a["forgetting_mean"] == pytest.approx(0.2) and a["change_mean"] == pytest.approx(-0.2)
    assert pd.isna(b["forgetting_mean"])  # the last task cannot be forgotten yet
    base = pt.loc[("single_task", "a")]
    assert base["final_mean"] == pytest.approx(0.6) and base["drop_pct_mean"] == pytest.approx(0.0)
    cells = task_table(per_task(runs).assign(stream="s"), "s")
    row = cells[(cells["strategy"] == "naive") & (cells["task"] == "a")].iloc[0]
    assert row["drop % vs baseline"] == "+50.0" and row["final / baseline"] == "0.500"
    verdicts = dict(zip(cells["strategy"] + "/" + cells["task"], cells["drop < 5 %"], strict=True))
    assert verdicts == {"naive/a": "✗", "naive/b": "✓", "single_task/a": "", "single_task/b": ""}


def test_trivial_references_shown_beside_the_baselines():
    labels = ["init", "after_exp0", "after_exp1"]
    ref = lambda a, b: {"a": {"name": "5-NN on raw pixels", "score": a},  # noqa: E731
                        "b": {"name": "1-NN on raw pixels (its target copied)", "score": b}}
    runs = pd.DataFrame([
        {"stream": "s", "strategy": "single_task", "baseline": True, "seed": 0, "tasks": ["a", "b"],
         "row_labels": labels, "R": [[0.0, 0.0], [0.8, 0.1], [0.2, 0.5]], "references": ref(0.6, 0.1)},
        {"stream": "s", "strategy": "single_task", "baseline": True, "seed": 1, "tasks": ["a", "b"],
         "row_labels": labels, "R": [[0.0, 0.0], [0.4, 0.1], [0.2, 0.5]], "references": ref(0.7, 0.3)},
        {"stream": "s", "strategy": "naive", "baseline": False, "seed": 0, "tasks": ["a", "b"], "row_labels": labels,
         "R": [[0.0, 0.0], [0.6, 0.0], [0.4, 0.6]], "references": None}])
    cells = task_table(per_task(runs), "s").set_index(["strategy", "task"])["trivial reference"]
    assert cells[("single_task", "a")] == "0.650 (5-NN)" and cells[("single_task", "b")] == "0.200 (1-NN)"
    assert cells[("naive", "a")] == ""  # shown on the baselines' rows, where the comparison is


def test_paired_differences_are_seed_by_seed(results):
    """paired.csv: replay − naive at each common seed, from the runs' own summaries; REPORT.md shows the table."""
    table = pd.read_csv(results / "paired.csv")
    row = table[(table.metric == "acc") & (table.strategy == "replay") & (table.against == "naive")].iloc[0]
    by_seed = {s["seed"]: s["acc"] for s in _summaries(results, "naive")}
    d = [s["acc"] - by_seed[s["seed"]] for s in _summaries(results, "replay")]
    assert row.n == 2 and row.mean_diff == pytest.approx(np.mean(d), abs=1e-6)
    assert row.test in ("paired t", "none (no spread)")
    assert "### Paired differences" in (results / "REPORT.md").read_text()
