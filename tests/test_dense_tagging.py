"""The dense suite's `tagging` task (benchmark/data/dense_kinds/tagging.py, task kind `multilabel`): its target is
the set of categories the scene's detection annotations hold, and a short run trains it and reports its mAP."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.config import parse_config
from benchmark.data import dense_sources
from benchmark.data.dense_sources import load_dense_task
from benchmark.errors import UserError
from benchmark.harness.run import run
from benchmark.outputs.results import existing_status
from benchmark.streams.dense_suite import DenseSuiteConfig

OFFLINE = {"download": False, "apt_install": False}


def test_a_scenes_tags_are_the_categories_of_its_boxes(fmnist_root, monkeypatch):
    monkeypatch.setitem(dense_sources.SCENE_COUNTS, "train", 24)
    monkeypatch.setitem(dense_sources.SCENE_COUNTS, "test", 12)
    read = {kind: load_dense_task(kind, "fmnist_scenes", fmnist_root, "train", n=0, seed=0, image_size=64, **OFFLINE)
            for kind in ("detection", "tagging")}
    assert read["tagging"].classes == read["detection"].classes and len(read["tagging"].dataset) == 24
    several = 0
    for i in range(24):  # the same scene through both kinds (n = 0 keeps every image, in order)
        (x_det, boxes), (x_tag, tags) = read["detection"].dataset[i], read["tagging"].dataset[i]
        assert torch.equal(x_det, x_tag) and tags["tags"].shape == (10,)
        assert set(torch.nonzero(tags["tags"]).flatten().tolist()) == set(boxes["labels"].tolist())
        several += int(tags["tags"].sum()) > 1
    assert several > 0  # scenes of 1–3 items: some hold several categories, a multi-label target


def test_the_stream_takes_its_tasks_by_name():
    assert DenseSuiteConfig().kinds == ("segmentation", "detection", "classification")  # the default, unchanged
    assert DenseSuiteConfig(tasks="segmentation, tagging", train_per_task=(5, 6)).kinds == ("segmentation", "tagging")
    for bad in ("tagging,tagging", "depth", ""):
        with pytest.raises(UserError, match="--dense_suite.tasks takes distinct dense task kinds"):
            DenseSuiteConfig(tasks=bad)
    with pytest.raises(UserError, match="one size or 2"):
        DenseSuiteConfig(tasks="segmentation,tagging", train_per_task=(5, 6, 7))


def test_a_short_run_trains_tagging_and_reports_its_map(tiny_dense):
    cfg, _ = parse_config(tiny_dense("--dense_suite.tasks", "classification,tagging", "--strategy", "lwf",
                                     "--epochs", "2"))
    folder, status = run(cfg)
    summary = json.loads((folder / "summary.json").read_text())
    assert status == "done" and summary["tasks"] == ["t0_cls_top1", "t1_tag_map"]
    assert summary["metric_units"]["t1_tag_map"] == "map"
    untrained, trained = summary["untrained"][1], summary["just_trained"][1]
    assert 0 < untrained < 1 and 0 < trained <= 1 and trained != untrained
    assert json.loads((folder / "config.json").read_text())["config"]["dense_suite.tasks"] == "classification,tagging"


def test_runs_written_before_the_option_match_the_default_tasks(tiny_dense):
    """A run folder of before --dense_suite.tasks (no such key) is the same config as today's default run, and not
    the same as a run of other tasks: resume keeps it, and the report keeps comparing it."""
    cfg, _ = parse_config(tiny_dense("--strategy", "naive", "--dense_suite.train-per-task", "8",
                                     "--dense_suite.test-per-task", "4"))
    folder, _ = run(cfg)
    record = json.loads((folder / "config.json").read_text())
    assert record["config"].pop("dense_suite.tasks") == "segmentation,detection,classification"
    (folder / "config.json").write_text(json.dumps(record))
    assert existing_status(folder, cfg.to_dict()) == ("same", "")
    other, _ = parse_config(tiny_dense("--strategy", "naive", "--dense_suite.train-per-task", "8",
                                       "--dense_suite.test-per-task", "4", "--dense_suite.tasks", "tagging"))
    assert existing_status(folder, other.to_dict())[0] == "different"
