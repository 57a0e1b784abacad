"""The multi-task report's average over tasks, unweighted and weighted by the experiment's fixed task weights (the
toolkit's "weighted or unweighted average across tasks"), checked against hand-computed values."""

import pytest

from benchmark.errors import UserError
from benchmark.mtl.report import AVERAGES_NOTE, averages, markdown, table, task_weights
from tests.test_mtl_transfer import fake_run

# classes accuracy 0.8; reconstruction mse 0.05 → recon score 0.5 (tests.test_mtl_transfer's MSE_MEAN)
TASKS = ["classes", "reconstruction"]


def run(name, weighting="equal", weights=None, seed=0, acc=0.8, mse=0.05):
    r = fake_run(name, TASKS, acc=acc, mse=mse, seed=seed, weighting=weighting)
    if weights is not None:
        r["config"][f"{weighting}.weights"] = weights
    return r


def test_the_weighted_average_uses_the_fixed_weights_and_equals_the_plain_one_without_them():
    runs = [run("in-order", "static", "2,1"), run("by-name", "static", "reconstruction=3"),
            run("equal"), run("learnt", "uncertainty")]
    df = table(runs).set_index("experiment")
    assert df.loc["in-order", "reconstruction"] == pytest.approx(0.5)  # the premise of the numbers below
    assert df["avg"].tolist() == pytest.approx([0.65] * 4)  # (0.8 + 0.5) / 2 whatever the weights
    assert df.loc["in-order", "weighted_avg"] == pytest.approx((2 * 0.8 + 1 * 0.5) / 3)  # 0.7
    assert df.loc["by-name", "weighted_avg"] == pytest.approx((1 * 0.8 + 3 * 0.5) / 4)  # 0.575; classes left at 1
    assert df.loc["equal", "weighted_avg"] == df.loc["learnt", "weighted_avg"] == pytest.approx(0.65)
    assert df.loc["in-order", "weights"] == "2,1"  # the weights named beside the average they weight


def test_over_seeds_the_averages_are_the_mean_of_each_seeds():
    runs = [run("s", "static", "3,1", seed=0, acc=0.8), run("s", "static", "3,1", seed=1, acc=0.6)]
    row = table(runs).set_index("experiment").loc["s"]
    assert row["avg"] == pytest.approx(((0.8 + 0.5) / 2 + (0.6 + 0.5) / 2) / 2)  # 0.6
    assert row["weighted_avg"] == pytest.approx(((3 * 0.8 + 0.5) / 4 + (3 * 0.6 + 0.5) / 4) / 2)  # 0.65


def test_the_report_shows_both_averages_and_defines_them():
    md = markdown(table([run("in-order", "static", "2,1")]))
    header = next(line for line in md.splitlines() if line.startswith("| experiment"))
    assert "| avg | weighted avg |" in header
    row = next(line for line in md.splitlines() if line.startswith("| in-order"))
    assert "| 0.650 | 0.700 |" in row
    assert "Σ_t w_t M_t / Σ_t w_t" in AVERAGES_NOTE and "--static.weights" in AVERAGES_NOTE


def test_weights_summing_to_zero_give_no_weighted_average_and_bad_weights_one_error():
    assert averages({"a": 0.4, "b": 0.6}, {"a": 0.0, "b": 0.0}) == {"avg": pytest.approx(0.5), "weighted_avg": None}
    assert averages({"a": 0.4, "b": None}, {"a": 1.0, "b": 1.0}) == {"avg": None, "weighted_avg": None}
    assert task_weights("static", {"static.weights": ""}, TASKS) == {"classes": 1.0, "reconstruction": 1.0}
    with pytest.raises(UserError, match="--static.weights"):
        task_weights("static", {"static.weights": "1,2,3"}, TASKS)
