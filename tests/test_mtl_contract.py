"""Contract test over every architecture × loss weighting × schedule (parametrized over the registries: a new entry
is covered with no edit): the real training loop runs, every task's loss falls below its untrained value, and every
score after every stage equals the committed golden file within its tolerance (tests/golden/mtl-training.txt,
trained in float64, written with repr: all digits; regenerated only for a deliberate change, see
tests/test_golden.py)."""

import itertools

import pytest
import torch

from benchmark.mtl import ARCHITECTURES, SCHEDULES, WEIGHTINGS, MultiTaskModel
from benchmark.mtl.train import train_stages
from benchmark.runtime.device import compute_dtype
from tests.golden_files import assert_golden_lines, deterministic
from tests.mtl_fixtures import N_FEATURES, tiny_cfg, tiny_data

COMBOS = list(itertools.product(ARCHITECTURES.names(), WEIGHTINGS.names(), SCHEDULES.names()))


@pytest.mark.parametrize("architecture,weighting,schedule", COMBOS)
def test_every_combination_trains_every_task(architecture, weighting, schedule):
    data = tiny_data()  # float32 data, as a real task set's; the model trains in float64 (casts its inputs)
    with compute_dtype("float64"), deterministic():
        _trains_every_task(architecture, weighting, schedule, data)


def _trains_every_task(architecture, weighting, schedule, data):
    torch.manual_seed(0)
    names = tuple(t.name for t in data.tasks)
    model = MultiTaskModel(data.tasks, architecture=architecture, loss_weighting=weighting, in_features=N_FEATURES,
                           shared_layers=[16, 16], task_layers=[8], num_experts=2)
    stages = SCHEDULES.get(schedule).build(None, epochs=8, tasks=names)  # routing learns bin by 7
    assert set().union(*(s.tasks for s in stages)) == set(names), "the schedule must train every task"
    rows, epochs, _ = train_stages(model, data, stages, tiny_cfg(), "cpu")
    init = rows[0][1]
    if schedule == "sequential":  # each task right after its own stage (later ones may make it forget)
        after = {t: rows[k + 1][1][t] for k, t in enumerate(names)}
        assert [label for label, _ in rows] == ["init", "after_exp0", "after_exp1", "after_exp2"]
    else:
        after = rows[-1][1]
    for t in names:
        assert after[t]["loss"] < init[t]["loss"], f"{t}: {init[t]['loss']:.4f} → {after[t]['loss']:.4f}"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert epochs[-1]["val_loss"].keys() == set(names)
    key = f"{architecture} {weighting} {schedule}"
    assert_golden_lines("mtl-training.txt", key, [
        f"{key} {label}: " + " ".join(f"{t}.{k}={v!r}" for t in names for k, v in sorted(scores[t].items()))
        for label, scores in rows])
