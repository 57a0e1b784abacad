"""benchmark/outputs/paired_stats.py: every statistic against a hand computation (and scipy where it is the
reference)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.outputs import paired_stats as ps


def _runs(values: dict, stream="s", baseline=()):
    """{strategy: {seed: (acc, bwt)}} → a frame shaped as report.collect's."""
    return pd.DataFrame([{"stream": stream, "strategy": name, "seed": seed, "acc": acc, "bwt": bwt,
                          "baseline": name in baseline}
                         for name, seeds in values.items() for seed, (acc, bwt) in seeds.items()])


def test_differences_are_taken_over_the_common_seeds_in_seed_order():
    a, b = {0: 0.9, 1: 0.8, 2: 0.7, 5: math.nan}, {2: 0.5, 0: 0.6, 3: 0.1, 5: 0.2}
    assert ps.paired_differences(a, b).tolist() == pytest.approx([0.3, 0.2])


def test_paired_t_by_hand():
    # d = 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1/√3) = 2√3; with 2 df, F(t) = 1/2 + t / (2√(2 + t²)),
    # so p = 1 − t/√(2 + t²) = 1 − 2√3/√14; the interval is 0.2 ± t_0.975,2 · 0.1/√3, t_0.975,2 = 4.302653
    out = ps.paired_test(np.array([0.1, 0.2, 0.3]))
    assert out["test"] == "paired t" and out["n"] == 3
    assert out["mean_diff"] == pytest.approx(0.2)
    assert out["p"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-9)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((0.2 - half, 0.2 + half), rel=1e-9)
    # the same as scipy's paired test on the two strategies' own values
    a, b = np.array([0.9, 0.85, 0.95]), np.array([0.8, 0.65, 0.65])
    assert ps.paired_test(a - b)["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_wilcoxon_from_six_seeds_by_hand():
    # 6 pairs, all positive: W− = 0, the exact two-sided p is 2 · P(W ≤ 0) = 2 / 2^6
    out = ps.paired_test(np.array([0.1, 0.2, 0.05, 0.3, 0.4, 0.15]))
    assert out["test"] == "Wilcoxon" and out["n"] == 6 and out["p"] == pytest.approx(2 / 64)
    # the smallest |d| negative: W− = 1, and two of the 64 sign patterns have W ≤ 1, so p = 2 · 2/64
    out = ps.paired_test(np.array([0.1, 0.2, -0.05, 0.3, 0.4, 0.15]))
    assert out["test"] == "Wilcoxon" and out["p"] == pytest.approx(4 / 64)
    # five pairs: the t-test (Wilcoxon could not go below 0.0625)
    assert ps.paired_test(np.array([0.1, 0.2, 0.05, 0.3, 0.4]))["test"] == "paired t"


def test_degenerate_cases_are_said_not_guessed():
    same = ps.paired_test(np.array([0.1, 0.1, 0.1]) + np.array([1e-17, 0, -1e-17]))
    assert same["test"] == "none (no spread)" and same["p"] == 0.0 and same["ci_low"] == same["ci_high"]
    zero = ps.paired_test(np.zeros(4))
    assert zero["p"] == 1.0 and zero["mean_diff"] == 0.0
    one = ps.paired_test(np.array([0.3]))
    assert one["mean_diff"] == 0.3 and math.isnan(one["p"]) and one["test"] == ""


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): × 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 → non-decreasing: 0.04 → 0.06
    adjusted = ps.holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert adjusted[4] == pytest.approx(0.02)
    assert ps.holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert ps.holm([]) == []


def test_the_table_compares_with_naive_and_the_best_and_corrects_each_table():
    runs = _runs({"naive": {0: (0.70, -0.20), 1: (0.72, -0.10), 2: (0.71, -0.15)},
                  "replay": {0: (0.90, 0.01), 1: (0.88, 0.00), 2: (0.91, 0.02)},
                  "ewc": {0: (0.75, -0.10), 1: (0.70, -0.12), 2: (0.73, -0.11)},
                  "single_task": {0: (0.99, math.nan), 1: (0.99, math.nan), 2: (0.99, math.nan)}},
                 baseline=("single_task",))
    table = ps.paired_table(runs)
    assert ps.best_strategy(runs, "s") == "replay"  # single_task's 0.99 is a baseline, not a contender
    acc = table[table.metric == "acc"].set_index(["strategy", "against"])
    # each pair once: replay − naive is there, so naive − replay is not (one test, counted once by Holm)
    assert set(acc.index) == {("ewc", "naive"), ("replay", "naive"), ("ewc", "replay")}
    assert acc.loc[("replay", "naive"), "mean_diff"] == pytest.approx(np.mean([0.20, 0.16, 0.20]))
    assert acc.loc[("replay", "naive"), "p"] == pytest.approx(
        stats.ttest_rel([0.90, 0.88, 0.91], [0.70, 0.72, 0.71]).pvalue)
    assert acc["p_holm"].tolist() == pytest.approx(ps.holm(acc["p"].tolist()))  # one family per stream × metric
    bwt = table[table.metric == "bwt"].set_index(["strategy", "against"])
    assert bwt.loc[("ewc", "naive"), "mean_diff"] == pytest.approx(np.mean([0.10, -0.02, 0.04]))
    text = ps.markdown(table, "s", "acc", "ACC")
    assert "| replay | naive | 3 | +0.187 |" in text and "single_task" not in text


def test_average_ranks_share_ties_and_friedman_by_hand():
    scores = pd.DataFrame({"a": [0.9, 0.7], "b": [0.8, 0.9], "c": [0.8, 0.8]}, index=["s1", "s2"])
    # s1: a 1, b and c tie for 2–3 → 2.5 each; s2: b 1, c 2, a 3
    assert ps.average_ranks(scores).to_dict() == {"b": 1.75, "a": 2.0, "c": 2.25}
    # the same order in 4 blocks: χ² = 12N/(k(k+1)) · Σ R̄² − 3N(k+1) = 4 · 14 − 48 = 8, p = e^(−8/2) with 2 df
    same = pd.DataFrame([[0.9, 0.8, 0.7]] * 4, columns=["a", "b", "c"])
    assert ps.friedman_p(same) == pytest.approx(math.exp(-4))
    assert math.isnan(ps.friedman_p(same[["a", "b"]]))


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_critical_difference_matches_demsars_table(k, q):
    # Demšar 2006, Table 5(a): q_0.05; CD = q · √(k(k+1)/(6N))
    assert ps.critical_difference(k, 7) == pytest.approx(q * math.sqrt(k * (k + 1) / 42), abs=2e-3)


def test_cliques_join_what_lies_within_the_critical_difference():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2})
    assert ps.cliques(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    assert ps.cliques(ranks, 2.5) == [["a", "b", "c", "d"]]
    assert ps.cliques(ranks, 0.1) == []


def test_ranks_section_needs_two_streams_and_draws_the_diagram(tmp_path):
    one = _runs({"naive": {0: (0.7, 0)}, "ewc": {0: (0.8, 0)}, "replay": {0: (0.9, 0)}})
    assert ps.ranks_section(one, tmp_path) == []
    two = pd.concat([one, _runs({"naive": {0: (0.6, 0)}, "ewc": {0: (0.5, 0)}, "replay": {0: (0.9, 0)}},
                                stream="t")])
    lines = ps.ranks_section(two, tmp_path)
    assert "| replay | 1.00 |" in lines and "| naive | 2.50 |" in lines and "| ewc | 2.50 |" in lines
    assert (tmp_path / "figures" / "ranks_cd.png").read_bytes()[:4] == b"\x89PNG"
