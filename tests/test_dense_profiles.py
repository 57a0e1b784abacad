"""The dense profiles: every strategy they list parses; the real-data profile fails offline with one line per
missing dataset naming the fix; `hatswap run --profile dense` runs the dense stream."""

import json

import pytest

from benchmark.cli import main
from benchmark.config import PROFILE_DIR, parse_config


@pytest.mark.parametrize("profile,schedule", [("dense", "cosine"), ("dense-paper", "cosine-stream")])
def test_dense_profiles_parse_for_each_of_their_strategies(profile, schedule):
    spec = json.loads((PROFILE_DIR / f"{profile}.json").read_text())
    assert spec["streams"] == ["dense_suite"] and "single_task" in spec["strategies"]
    for strategy in spec["strategies"]:
        cfg, _ = parse_config(["--profile", profile, "--strategy", strategy])
        assert cfg.stream == "dense_suite" and cfg.lr_schedule == schedule and cfg.optimizer == "adamw"
    if profile == "dense-paper":  # the dense suite document's settings, its schedule included, and said so
        assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.batch_size) == (5, 8e-4, 1e-4, 4)
        assert cfg.backbone == "efficientnet_b0_fpn" and cfg.stream_args.image_size == 512
        assert f"one cosine over all {3 * cfg.epochs} epochs of the stream, not restarted" in spec["description"]
        assert "not yet run with this schedule" in spec["description"]


@pytest.mark.parametrize("missing,fragment", [
    ("voc", "VOC2012 not found under"), ("coco", "COCO 2017 not found"), ("imagenette", "Imagenette not found")])
def test_dense_paper_offline_names_each_missing_dataset(missing, fragment, tmp_path, capsys):
    root = tmp_path / "data"
    voc = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    if missing != "voc":  # an (empty) VOC split list gets past the VOC check; CocoDetection is never reached then
        voc.mkdir(parents=True)
        for split in ("train", "val"):
            (voc / f"{split}.txt").write_text("")
    if missing == "imagenette":
        for split in ("train2017", "val2017"):
            (root / "coco" / split).mkdir(parents=True, exist_ok=True)
        (root / "coco" / "annotations").mkdir()
        for split in ("train2017", "val2017"):
            (root / "coco" / "annotations" / f"instances_{split}.json").write_text(
                json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    code = main(["run", "--profile", "dense-paper", "--data-root", str(root), "--no-download",
                 "--out-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("hatswap: error: ") and fragment in err[-1]
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "r" / "runs").exists()
    if missing == "voc":  # nothing there: all three datasets named in the one line
        assert all(f in err[-1] for f in ("VOC2012 not found", "COCO 2017 not found", "Imagenette not found"))
