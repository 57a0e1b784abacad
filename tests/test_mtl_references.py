"""Trivial references (1-NN on pixels, majority class, mean image) on hand-computed data, and what a run records for
tuning on validation: its final validation scores and the references of its data."""

import json
import math

import pytest
import torch

from benchmark.cli import main
from benchmark.mtl.references import CONSTANT, NEAREST, nearest_neighbour
from benchmark.mtl.task_sets.mtl_data import MTLData
from benchmark.tasks import TaskSpec
from tests.test_mtl_run import TINY, _data


def hand_data() -> MTLData:
    x_train = torch.tensor([[0.0, 0.0], [10.0, 10.0], [0.0, 1.0]])
    x_test = torch.tensor([[0.0, 0.4], [9.0, 9.0]])  # nearest: train 0 (d² 0.16 < 0.36), train 1
    tasks = [TaskSpec("cls", kind="binary"),
             TaskSpec("rec", kind="reconstruction", params={"shape": [2], "mse_of_mean_image": 2.0})]
    y_train = {"cls": torch.tensor([0, 1, 1]), "rec": x_train}
    y_test = {"cls": torch.tensor([1, 1]), "rec": x_test}
    return MTLData(tasks, {"train": x_train, "test": x_test}, {"train": y_train, "test": y_test})


def test_trivial_references_on_hand_computed_data():
    data = hand_data()
    assert nearest_neighbour(data.x["train"], data.x["test"]).tolist() == [0, 1]
    refs = data.references
    assert refs["primary"] == {"cls": "accuracy", "rec": "recon_score"} and set(refs) == {"primary", "test"}
    test = refs["test"]
    assert test[NEAREST] == {"cls": {"accuracy": 0.5}}  # predicts 0, 1 for labels 1, 1
    assert test[CONSTANT]["cls"] == {"accuracy": 1.0}  # majority of [0, 1, 1] is 1
    # mean training image (10/3, 11/3); test errors: (10/3)², (11/3 − 0.4)², (9 − 10/3)², (9 − 11/3)²
    mse = ((10 / 3) ** 2 + (11 / 3 - 0.4) ** 2 + (9 - 10 / 3) ** 2 + (9 - 11 / 3) ** 2) / 4
    rec = test[CONSTANT]["rec"]
    assert rec["mse"] == pytest.approx(mse) and rec["recon_score"] == pytest.approx(1 - mse / 2.0)
    assert rec["psnr"] == pytest.approx(10 * math.log10(4 / mse))


def test_a_run_records_final_validation_scores_and_the_references(tmp_path, fmnist_root):
    assert main(["mtl", "--tasks", "classes,reconstruction", "--data-root", str(fmnist_root),
                 "--out-dir", str(tmp_path), *TINY]) == 0
    s = json.loads((tmp_path / "mtl/runs/shared-bottom-equal-joint/seed0/summary.json").read_text())
    val = s["final_val"]
    assert set(val) == {"classes", "reconstruction"}
    assert 0 <= val["classes"]["accuracy"] <= 1 and "recon_score" in val["reconstruction"]
    assert val["classes"]["loss"] == pytest.approx(s["epochs"][-1]["val_loss"]["classes"])
    assert s["transfer_metric"] == {"classes": {"metric": "accuracy", "lower_is_better": False},
                                    "reconstruction": {"metric": "mse", "lower_is_better": True}}
    assert s["final_metrics"]["reconstruction"]["mse"] == pytest.approx(s["final_metrics"]["reconstruction"]["loss"])
    data = _data(fmnist_root)  # the same sizes and seed as TINY: the same images
    nn = data.y["train"]["classes"][nearest_neighbour(data.x["train"], data.x["test"])]
    expected = float((nn == data.y["test"]["classes"]).double().mean())
    assert s["references"]["test"][NEAREST]["classes"]["accuracy"] == pytest.approx(expected)
    assert s["references"]["test"][CONSTANT]["reconstruction"]["recon_score"] == pytest.approx(0.0, abs=1e-6)
