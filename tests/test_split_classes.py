"""Split streams (`split_classes`): the class groups, their errors, and the samples against Avalanche's nc_benchmark."""

import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from benchmark.cli import main
from benchmark.data.loading import load_source
from benchmark.errors import UserError
from benchmark.registry import STRATEGIES, STREAMS
from benchmark.streams.split_classes import SplitClassesConfig, class_groups


def test_the_fixed_order_is_the_literatures():
    assert class_groups(10, 5, "fixed", seed=3) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert class_groups(100, 10, "fixed", seed=0)[1] == list(range(10, 20))


def test_the_seeded_order_is_a_permutation_drawn_from_the_seed():
    a, b, c = (class_groups(10, 5, "seeded", seed=s) for s in (0, 0, 1))
    assert a == b != c
    assert sorted(sum(a, [])) == list(range(10)) and all(len(g) == 2 for g in a)
    assert a != class_groups(10, 5, "fixed", seed=0)


@pytest.mark.parametrize("tasks", [3, 10, 0])
def test_tasks_that_do_not_split_the_classes_name_the_ones_that_do(tasks):
    with pytest.raises(UserError, match=r"use one of 1, 2, 5$"):
        class_groups(10, tasks, "fixed", seed=0)


def _fingerprints(ds) -> list[tuple[str, int]]:
    """(sha1 of the image, label) of every sample, sorted: the dataset as a multiset."""
    return sorted((hashlib.sha1(x.numpy().tobytes()).hexdigest(), int(y)) for x, y, *_ in ds)


@pytest.mark.parametrize("order", ["fixed", "seeded"])
def test_equals_avalanches_nc_benchmark_sample_by_sample(fmnist_root, order):
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    cfg = SplitClassesConfig(tasks=5, class_order=order, train_per_task=0, test_per_task=0)
    ours = STREAMS.get("split_classes").build(cfg, seed=4, data_root=fmnist_root, download=False, apt_install=False)
    whole = {}
    for split in ("train", "test"):
        src = load_source("fashion_mnist", str(fmnist_root), split == "train", 0, False, False)
        images = torch.stack([src.dataset[i][0] for i in range(len(src.dataset))])
        whole[split] = TensorDataset(images, torch.as_tensor(src.targets))
    order_ids = sum(class_groups(10, 5, order, seed=4), [])
    theirs = nc_benchmark(whole["train"], whole["test"], n_experiences=5, task_labels=True,
                          fixed_class_order=order_ids, class_ids_from_zero_in_each_exp=True)
    for stream in ("train_stream", "test_stream"):
        for exp_ours, exp_theirs in zip(getattr(ours.scenario, stream), getattr(theirs, stream), strict=True):
            assert exp_ours.task_label == exp_theirs.task_label
            assert _fingerprints(exp_ours.dataset) == _fingerprints(exp_theirs.dataset)
    assert [t.about["classes"] for t in ours.tasks] == [order_ids[i:i + 2] for i in range(0, 10, 2)]
    assert all(t.kind == "multiclass" and t.n_outputs == 2 for t in ours.tasks)


def test_a_split_run_has_one_column_per_task_and_names_its_classes(tmp_path, fmnist_root):
    from tests.conftest import tiny_args

    args = tiny_args(tmp_path, fmnist_root, "--stream", "split_classes", "--split_classes.tasks", "2",
                     "--split_classes.train-per-task", "40", "--split_classes.test-per-task", "20",
                     "--strategy", "naive")
    assert main(["run", *args]) == 0
    header = (tmp_path / "runs" / "split_classes" / "naive" / "seed0" / "matrix.csv").read_text().splitlines()[0]
    assert header == ("eval_point,t0_t_shirt_top_trouser_pullover_dress_coat,"
                      "t1_sandal_shirt_sneaker_bag_ankle_boot")
    assert np.isfinite([float(v) for v in (tmp_path / "runs" / "split_classes" / "naive" / "seed0" / "matrix.csv")
                        .read_text().splitlines()[-1].split(",")[1:]]).all()



@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_runs_on_a_split_stream(tmp_path, fmnist_root, strategy):
    """Task-incremental Split Fashion-MNIST (5 tasks × 2 classes, tiny): every strategy runs, and its R holds a
    score in [0, 1] for every task at every evaluation point."""
    from tests.conftest import tiny_args

    args = tiny_args(tmp_path, fmnist_root, "--stream", "split_classes", "--split_classes.train-per-task", "24",
                     "--split_classes.test-per-task", "12", "--epochs", "1", "--strategy", strategy,
                     *STRATEGIES.get(strategy).meta.required_flags())
    assert main(["run", *args]) == 0
    rows = (tmp_path / "runs" / "split_classes" / strategy / "seed0" / "matrix.csv").read_text().splitlines()
    assert len(rows[0].split(",")) == 6
    scores = np.array([[float(v) for v in row.split(",")[1:]] for row in rows[1:]])
    assert ((scores >= 0) & (scores <= 1)).all()
