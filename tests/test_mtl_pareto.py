"""The Pareto front over multi-task configurations (benchmark/mtl/pareto.py) on a hand-made case."""

import pandas as pd
import pytest

from benchmark.mtl.pareto import dominates, front


def test_the_front_keeps_exactly_the_non_dominated_configurations():
    lower = {"acc": False, "mse": True}
    points = {"A": {"acc": 0.9, "mse": 0.2}, "B": {"acc": 0.8, "mse": 0.1}, "C": {"acc": 0.8, "mse": 0.3},
              "D": {"acc": 0.9, "mse": 0.2}}
    assert dominates(points["A"], points["C"], lower) and not dominates(points["A"], points["B"], lower)
    assert not dominates(points["A"], points["D"], lower)  # equal everywhere: neither dominates
    assert front(points, lower) == {"A": [], "B": [], "C": ["A", "B", "D"], "D": []}


def test_configurations_are_compared_on_the_tasks_they_share():
    lower = {}
    points = {"two": {"x": 0.9, "y": 0.5}, "one": {"x": 0.8}, "other": {"z": 1.0}}
    assert front(points, lower) == {"two": [], "one": ["two"], "other": []}


def test_the_pareto_table_for_wandb_holds_the_reports_front_and_what_dominates_the_rest(tmp_path):
    from benchmark.mtl.report import pareto_markdown, pareto_table, table
    from tests.test_mtl_transfer import fake_run

    tasks = ["classes", "reconstruction"]  # recon score = 1 - mse / 0.1: 0.5, 0.6, 0.4
    runs = [fake_run("a", tasks, acc=0.8, mse=0.05), fake_run("b", tasks, acc=0.7, mse=0.04),
            fake_run("c", tasks, acc=0.7, mse=0.06), fake_run("stl", ["classes"], acc=0.9)]
    df = table(runs)
    df.to_csv(tmp_path / "summary.csv", index=False)  # what the batch's summary run reads back
    columns, rows = pareto_table(pd.read_csv(tmp_path / "summary.csv"))
    assert columns == ["experiment", "classes", "reconstruction", "on_front", "dominated_by"]
    assert [(r[0], r[3], r[4]) for r in rows] == [("a", True, ""), ("b", True, ""), ("c", False, "a, b")]
    assert rows[2][1:3] == pytest.approx([0.7, 0.4])
    md = pareto_markdown(df)
    assert "| **a** |" in md and "| **b** |" in md and "| c |" in md  # the same front as the report's
