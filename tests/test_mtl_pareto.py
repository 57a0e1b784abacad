"""The Pareto front over multi-task configurations (benchmark/mtl/pareto.py) on a hand-made case."""

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
