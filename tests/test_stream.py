import numpy as np
import pytest

from benchmark.registry import STREAMS
from benchmark.streams.binary_tasks import TASKS, BinaryTasksConfig, stratified_subsample
from tests.conftest import PER_CLASS_TEST


@pytest.fixture(scope="module")
def bench(fmnist_root):
    cfg = BinaryTasksConfig(train_per_task=45, test_per_task=0)
    return STREAMS.get("binary_tasks").build(cfg, seed=3, data_root=fmnist_root, download=False, apt_install=False)


def test_three_task_incremental_experiences(bench):
    train, test = bench.scenario.train_stream, bench.scenario.test_stream
    assert len(train) == len(test) == 3
    for t, (exp_tr, exp_te) in enumerate(zip(train, test, strict=True)):
        assert exp_tr.task_label == exp_te.task_label == t
        assert set(exp_tr.dataset.targets) == {0, 1}
        x, y, tl = exp_tr.dataset[0]
        assert x.shape == (1, 28, 28) and tl == t and y in (0, 1)
    assert [t.name for t in bench.tasks] == ["t0_trouser_vs_coat_sneaker", "t1_pullover_vs_sandal_shirt",
                                             "t2_dress_vs_bag_ankle_boot"]
    assert all(t.n_outputs == 2 and t.primary == "accuracy" for t in bench.tasks)


def test_tasks_keep_their_three_classes_with_binary_targets(bench):
    frame = bench.joint_frame("train")
    assert list(frame.columns) == ["index", "source_label", "target", "task_id"]
    for t, (pos, negs) in enumerate(TASKS):
        rows = frame[frame.task_id == t]
        assert set(rows.source_label) == {pos, *negs}
        assert (rows.target == (rows.source_label == pos).astype(int)).all()
        assert len(rows) == 45 and (rows.source_label.value_counts() == 15).all()  # stratified 1:1:1
        # the dataset yields exactly the targets the frame shows
        ds = bench.scenario.train_stream[t].dataset
        assert [int(ds[i][1]) for i in range(len(ds))] == rows.target.tolist()
    test = bench.joint_frame("test")
    assert len(test) == 3 * 3 * PER_CLASS_TEST  # test_per_task = 0 keeps every test image of the classes


def test_joint_dataset_merges_all_tasks_with_task_identity(bench):
    joint = bench.joint_train
    assert len(joint) == 3 * 45
    assert sorted(set(joint.targets_task_labels)) == [0, 1, 2]
    assert [joint[i][2] for i in (0, 45, 90)] == [0, 1, 2]


def test_subsample_is_seeded_and_stratified():
    labels = np.repeat(np.arange(10), 100)
    a = stratified_subsample(labels, (1, 4, 7), 31, np.random.default_rng(0))
    b = stratified_subsample(labels, (1, 4, 7), 31, np.random.default_rng(0))
    c = stratified_subsample(labels, (1, 4, 7), 31, np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    counts = np.bincount(labels[a], minlength=10)
    assert len(a) == 31 and sorted(counts[[1, 4, 7]]) == [10, 10, 11] and counts.sum() == 31
    assert len(stratified_subsample(labels, (2, 5, 6), 0, np.random.default_rng(0))) == 300


def test_readme_snippet_for_the_joint_dataset(fmnist_root):
    """docs/components.md's inspection example, on the fixture data."""
    from pathlib import Path

    from benchmark.registry import STREAMS

    bench = STREAMS.get("binary_tasks").build(BinaryTasksConfig(train_per_task=30), seed=0,
                                              data_root=Path(fmnist_root), download=False, apt_install=False)
    frame = bench.joint_frame("train")
    assert len(bench.joint_train) == len(frame) == 90
    assert frame.groupby("task_id").target.mean().round(3).tolist() == [0.333] * 3
