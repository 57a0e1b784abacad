"""Domain-incremental streams (`permuted`, `rotated`) and `--scenario domain-il`: one head shared by every task."""

import numpy as np
import pandas as pd
import pytest
import torch
from avalanche.benchmarks.classic.cmnist import PixelsPermutation

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.harness.scenarios import apply_scenario, model_tasks
from benchmark.registry import STRATEGIES, STREAMS
from benchmark.streams.permuted import DomainStreamConfig
from benchmark.streams.rotated import RotatedConfig
from benchmark.tasks import TaskSpec
from tests.conftest import tiny_args


def _build(name, cfg, seed=0, root=None):
    return STREAMS.get(name).build(cfg, seed=seed, data_root=root, download=False, apt_install=False)


def _images(bench, split, t):
    return bench.sets[split][t][0].tensors[0]


def test_each_task_permutes_the_pixels_as_avalanche_draws_and_applies_it(fmnist_root):
    bench = _build("permuted", DomainStreamConfig(tasks=3, train_per_task=0, test_per_task=0), seed=7,
                   root=fmnist_root)
    draw = np.random.RandomState(7)  # Avalanche's PermutedMNIST: the t-th permutation(784) of RandomState(seed)
    plain = _build("rotated", RotatedConfig(tasks=1, angles=(0,), train_per_task=0, test_per_task=0),
                   root=fmnist_root)
    source = _images(plain, "test", 0)
    for t in range(3):
        avalanche = PixelsPermutation(torch.from_numpy(draw.permutation(784)).long())
        expected = torch.stack([avalanche(img) for img in source[:5]])
        assert torch.equal(_images(bench, "test", t)[:5], expected)
    assert not torch.equal(_images(bench, "test", 0), _images(bench, "test", 1))
    assert [t.kind for t in bench.tasks] == ["multiclass"] * 3 and bench.tasks[0].n_outputs == 10


def test_rotations_are_seeded_as_avalanches_or_given(fmnist_root):
    bench = _build("rotated", RotatedConfig(tasks=3, train_per_task=0, test_per_task=0), seed=3, root=fmnist_root)
    draw = np.random.RandomState(3)
    assert [t.name for t in bench.tasks] == [f"t{t}_rotated_{draw.randint(-180, 181)}deg" for t in range(3)]
    given = _build("rotated", RotatedConfig(tasks=2, angles=(0, 90), train_per_task=0, test_per_task=0),
                   root=fmnist_root)
    upright, turned = _images(given, "train", 0), _images(given, "train", 1)
    assert torch.equal(turned, torch.rot90(upright, 1, dims=(-2, -1)))  # 90° counter-clockwise, nothing lost
    with pytest.raises(UserError, match=r"--rotated.angles needs 2 angles"):
        RotatedConfig(tasks=2, angles=(0, 90, 180))


def test_domain_il_shares_one_head_and_keeps_the_labels(fmnist_root):
    bench = _build("permuted", DomainStreamConfig(tasks=3, train_per_task=30, test_per_task=20), root=fmnist_root)
    shared = apply_scenario("domain-il", bench, "permuted")
    (head,) = shared.tasks
    assert head.n_outputs == 10 and shared.class_ranges is None and len(shared.column_specs) == 3
    for old, new in zip(bench.scenario.train_stream, shared.scenario.train_stream, strict=True):
        assert new.task_labels == [0] and list(new.dataset.targets) == list(old.dataset.targets)
    with pytest.raises(UserError, match=r"tasks have \[2, 3\]: use --scenario task-il or class-il"):
        model_tasks("domain-il", [TaskSpec("a"), TaskSpec("b", "multiclass", params={"num_classes": 3})], "s")


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES.names() if "domain-il" in STRATEGIES.get(s).meta.scenarios])
def test_every_strategy_that_declares_domain_il_runs_in_it(tmp_path, fmnist_root, strategy):
    args = tiny_args(tmp_path, fmnist_root, "--stream", "rotated", "--rotated.tasks", "3", "--rotated.train-per-task",
                     "30", "--rotated.test-per-task", "20", "--epochs", "1", "--scenario", "domain-il",
                     "--strategy", strategy, *STRATEGIES.get(strategy).meta.required_flags())
    assert main(["run", *args]) == 0
    folder = tmp_path / "runs" / "rotated-domain-il" / strategy / "seed0"
    scores = pd.read_csv(folder / "matrix.csv", index_col=0).to_numpy()
    assert scores.shape[1] == 3 and ((scores >= 0) & (scores <= 1)).all()
    assert not (folder / "matrix_task_il.csv").exists()


@pytest.mark.parametrize("cls, flag", [(DomainStreamConfig, "--permuted.test-per-task"),
                                       (RotatedConfig, "--rotated.test-per-task")])
def test_a_bad_size_names_the_streams_own_flag(cls, flag):
    with pytest.raises(UserError, match=f"invalid value for {flag}: -1"):
        cls(test_per_task=-1)
