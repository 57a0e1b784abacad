"""How a pretraining is scored (benchmark/pretrain/evaluation.py, pipeline.evaluation, supervised.py): the headline
probes learn from every train image, the quick check's scores are those of probes given only its subsample, the
supervised bound learns from the labels, and --reevaluate rescores weights without touching them."""

import json
import shutil

import torch
from torch import nn

from benchmark.pretrain import artifact, pipeline
from benchmark.pretrain.config import parse_pretrain_config
from benchmark.pretrain.evaluation import accuracies, evaluate
from benchmark.pretrain.pipeline import SUPERVISED, pretrain, subsample
from benchmark.pretrain.supervised import train_supervised


def test_a_subsets_scores_equal_the_probes_trained_on_its_rows_alone():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.rand(40, 1, 4, 4, generator=g), torch.rand(12, 1, 4, 4, generator=g)
    train_y, test_y = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (12,), generator=g)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    idx = torch.as_tensor(subsample(40, 15, seed=3))
    rows, subset_rows = evaluate({"net": backbone}, (train_x, train_y), (test_x, test_y), 3, 5, 0.1, 8,
                                 torch.device("cpu"), {"quick": idx})
    assert set(rows) == {"net", "raw pixels"} and set(subset_rows["quick"]) == {"net", "raw pixels"}
    with torch.no_grad():
        f_train, f_test = backbone(train_x[idx]), backbone(test_x)
    assert subset_rows["quick"]["net"] == accuracies(f_train, train_y[idx], f_test, test_y, 3, 5, 0.1)
    assert subset_rows["quick"]["raw pixels"] == accuracies(train_x[idx].flatten(1), train_y[idx],
                                                            test_x.flatten(1), test_y, 3, 5, 0.1)
    assert rows["raw pixels"] == accuracies(train_x.flatten(1), train_y, test_x.flatten(1), test_y, 3, 5, 0.1)


def test_subsample_draws_sorted_distinct_rows_and_all_of_them_for_zero():
    idx = subsample(100, 10, seed=0)
    assert len(set(idx.tolist())) == 10 and list(idx) == sorted(idx) and idx.max() < 100
    assert subsample(100, 0, seed=0).tolist() == list(range(100)) == subsample(100, 500, seed=0).tolist()


def test_the_supervised_bound_learns_from_the_labels(tiny_pretrain):
    """Two classes told apart by brightness alone: the cross-entropy falls, and other labels train other weights."""
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "4", "--batch-size", "16", "--lr", "0.05"))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    images = (labels.view(-1, 1, 1, 1).float() * 1.6 - 0.8) + 0.1 * torch.randn(64, 1, 28, 28, generator=g)
    backbone, record = train_supervised(cfg, images, labels, 2, torch.device("cpu"))
    assert record["epochs"] == 4 and record["train_images"] == 64 and len(record["epoch_losses"]) == 4
    assert record["epoch_losses"][-1] < 0.5 * record["epoch_losses"][0]
    assert not backbone.training
    other, _ = train_supervised(cfg, images, labels[torch.randperm(64, generator=g)], 2, torch.device("cpu"))
    pairs = zip(backbone.state_dict().values(), other.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_the_headline_uses_every_train_image_and_the_quick_check_a_subsample(tiny_pretrain):
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-quick-images", "100",
                                                 "--eval-supervised"))
    weights, _ = pretrain(cfg)
    ev = json.loads(weights.with_name("vit_tiny.manifest.json").read_text())["evaluation"]
    assert ev["train_images"] == 300 and ev["test_images"] == 120  # the fixture's whole splits
    assert ev["quick_check"]["train_images"] == 100 and "not the headline" in ev["quick_check"]["protocol"]
    assert set(ev["rows"]) == set(ev["quick_check"]["rows"]) == {"DINO pretrained", "random init", "raw pixels",
                                                                 SUPERVISED}
    assert ev["supervised"]["epochs"] == 1 and ev["supervised"]["train_images"] == 300
    assert ev["settings"]["eval_train_images"] == 0 and ev["settings"]["eval_supervised"] is True


def test_reevaluate_rescores_the_weights_and_leaves_them_and_their_key_alone(tiny_pretrain, tmp_path, monkeypatch,
                                                                             capsys):
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-train-images", "60"))
    weights, _ = pretrain(cfg)
    path = weights.with_name("vit_tiny.manifest.json")
    before = json.loads(path.read_text())
    assert before["evaluation"]["train_images"] == 60 and "quick_check" not in before["evaluation"]
    # the same settings again: a cache hit, nothing rescored; --reevaluate rescores under the new settings
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-train-images", "60"))
    assert pretrain(cfg)[1] == "cached"
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-quick-images", "50"))
    pretrain(cfg, reevaluate=True)
    after = json.loads(path.read_text())
    assert after["evaluation"]["train_images"] == 300 and after["evaluation"]["quick_check"]["train_images"] == 50
    assert {k: v for k, v in after.items() if k != "evaluation"} == {k: v for k, v in before.items()
                                                                     if k != "evaluation"}
    assert artifact.sha256_file(weights) == before["weights_sha256"]
    # committed weights are rescored in place too (their manifest is the one a fresh clone shows)
    monkeypatch.setattr(pipeline, "REFERENCE_DIR", tmp_path / "reference")
    (tmp_path / "reference").mkdir()
    shutil.copytree(weights.parent.parent.parent, tmp_path / "reference" / "pretrain")
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-quick-images", "40", out="elsewhere"))
    reference, status = pretrain(cfg, reevaluate=True)
    assert status == "cached" and reference.is_relative_to(tmp_path / "reference")
    committed = json.loads(reference.with_name("vit_tiny.manifest.json").read_text())
    assert committed["evaluation"]["quick_check"]["train_images"] == 40
    err = capsys.readouterr().err
    assert "probes trained on 300 train images" in err and "quick check (probes on a 40-image subsample" in err


def test_the_validation_split_holds_out_train_images_and_never_reads_the_test_split(tiny_pretrain, monkeypatch):
    """--eval-split val: the probes learn from the train split minus a seeded hold-out and are scored on it, stored
    beside the test headline (which stays), and the test split is never loaded."""
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-quick-images", "0"))
    weights, _ = pretrain(cfg)
    path = weights.with_name("vit_tiny.manifest.json")
    headline = json.loads(path.read_text())["evaluation"]
    assert "eval_split" not in headline["settings"]  # the test split's settings as before the field existed
    loads = []
    real = pipeline.source_split
    monkeypatch.setattr(pipeline, "source_split", lambda c, train, n: loads.append(train) or real(c, train, n))
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-quick-images", "0", "--eval-split", "val",
                                                 "--eval-val-images", "50", "--eval-supervised"))
    pretrain(cfg)
    assert loads and all(loads), "the test split was read for a validation evaluation"
    manifest = json.loads(path.read_text())
    val = manifest["validation"]
    assert val["train_images"] == 250 and val["val_images"] == 50 and "held-out" in val["protocol"]
    assert val["supervised"]["train_images"] == 250  # the bound never sees the held-out labels
    assert val["settings"]["eval_split"] == "val" and manifest["evaluation"] == headline
    train, held = pipeline.probe_splits(cfg)
    assert len(train[1]) + len(held[1]) == 300 and len(held[1]) == 50
    again = pipeline.probe_splits(cfg)[1][0]
    assert torch.equal(held[0], again)  # seeded: the same hold-out each time
