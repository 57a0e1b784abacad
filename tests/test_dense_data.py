"""Dense-suite data: offline Fashion-MNIST scenes and real VOC/COCO folders, read by torchvision's own classes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CocoDetection, ImageFolder, VOCSegmentation, wrap_dataset_for_transforms_v2

from benchmark.data import dense_sources, fmnist_scenes
from benchmark.data.dense_kinds.detection import coco_dataset
from benchmark.data.dense_sources import DENSE_KINDS, DenseView, dense_kind, load_dense_task, seeded_subset
from benchmark.data.fmnist_scenes import ensure_fmnist_scenes
from benchmark.errors import UserError
from benchmark.streams.dense_suite import KIND_ORDER, DenseSuiteConfig
from benchmark.tasks import TaskSpec
from tests.conftest import fashion_mnist_files, write_fashion_mnist

N_TRAIN, N_TEST = 24, 12
OFFLINE = {"download": False, "apt_install": False}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    write_fashion_mnist(root)
    folder, prov = ensure_fmnist_scenes(root, n_train=N_TRAIN, n_test=N_TEST, **OFFLINE)
    return root, folder, prov, json.loads((folder / "manifest.json").read_text())


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setitem(dense_sources.SCENE_COUNTS, "train", N_TRAIN)
    monkeypatch.setitem(dense_sources.SCENE_COUNTS, "test", N_TEST)


def fmnist_labels(split: str) -> np.ndarray:
    return np.frombuffer(fashion_mnist_files()[f"{split}-labels-idx1-ubyte"][8:], np.uint8)


def test_scene_boxes_tightly_enclose_their_mask_pixels():
    rng = np.random.default_rng(1)
    images = np.asarray(rng.integers(0, 256, (20, 28, 28)) * (rng.random((20, 28, 28)) > 0.5), np.uint8)
    labels = rng.integers(0, 10, 20)
    for _ in range(30):
        items = fmnist_scenes._Items(np.arange(20), rng)
        img, mask, objects = fmnist_scenes._scene(images, labels, items, 64, rng, 3)
        assert 1 <= len(objects) <= 3 and set(np.unique(mask)) <= set(range(11)) | {255}
        for c, (x1, y1, x2, y2), idx in objects:
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64 and c == labels[idx]
            inside = mask[y1:y2, x1:x2] == c + 1
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert (mask > 0).sum() == sum(((mask[y1:y2, x1:x2] > 0) & (mask[y1:y2, x1:x2] != 255)).sum()
                                       for _, (x1, y1, x2, y2), _ in objects) + (mask == 255).sum()


def test_scenes_read_back_through_torchvision(scenes):
    _, folder, _, manifest = scenes
    train_labels = fmnist_labels("train")
    for split, n in (("train", N_TRAIN), ("val", N_TEST)):
        voc = VOCSegmentation(str(folder), year="2012", image_set=split)
        assert len(voc) == n
        for i in range(n):
            img, mask = voc[i]
            m = np.asarray(mask)
            assert img.mode == "RGB" and img.size == (64, 64) and mask.mode == "P"
            assert set(np.unique(m)) <= set(range(11)) | {255} and (m > 0).any()
        coco = CocoDetection(str(folder / "coco" / "images" / split),
                             str(folder / "coco" / "annotations" / f"instances_{split}.json"))
        wrapped = wrap_dataset_for_transforms_v2(coco, target_keys=("boxes", "labels"))
        assert len(coco) == n
        for i in range(n):
            _, target = wrapped[i]
            boxes = target["boxes"]
            assert ((boxes[:, :2] >= 0) & (boxes[:, 2:] <= 64) & (boxes[:, 2:] > boxes[:, :2])).all()
            assert 1 <= len(boxes) <= 3 and set(target["labels"].tolist()) <= set(range(1, 11))
        cls = ImageFolder(str(folder / "classification" / split), allow_empty=True)
        assert len(cls) == n and len(cls.classes) == 10 and cls.classes[0].startswith("00_")
    anns = CocoDetection(str(folder / "coco" / "images" / "train"),
                         str(folder / "coco" / "annotations" / "instances_train.json")).coco.dataset["annotations"]
    assert [a["category_id"] - 1 for a in anns] == [int(train_labels[a["fmnist_index"]]) for a in anns]
    assert manifest["counts"]["detection"] == {"train": N_TRAIN, "val": N_TEST}


def test_task_item_pools_are_disjoint(scenes):
    items = scenes[3]["fmnist_items"]
    for split in ("train", "val"):
        pools = [{i for scene in items[task][split] for i in scene} for task in fmnist_scenes.TASKS]
        assert all(pools) and not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_and_cached(scenes, tmp_path, monkeypatch):
    root, folder, prov, _ = scenes
    write_fashion_mnist(tmp_path)
    again, prov2 = ensure_fmnist_scenes(tmp_path, n_train=N_TRAIN, n_test=N_TEST, **OFFLINE)
    assert again.name == folder.name and prov2["key"] == prov["key"] and _digests(again) == _digests(folder)
    mtime = (folder / "manifest.json").stat().st_mtime_ns
    monkeypatch.setattr(fmnist_scenes, "generate", lambda *a, **k: pytest.fail("cache not reused"))
    assert ensure_fmnist_scenes(root, n_train=N_TRAIN, n_test=N_TEST, **OFFLINE)[0] == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == mtime


def test_crashed_generation_leaves_no_folder(tmp_path, monkeypatch):
    write_fashion_mnist(tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fmnist_scenes, "_write_task", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_fmnist_scenes(tmp_path, n_train=4, n_test=2, **OFFLINE)
    assert list((tmp_path / "fmnist_scenes").iterdir()) == []


@pytest.mark.parametrize("kind", KIND_ORDER)
def test_load_dense_task_scenes(scenes, small_counts, kind):
    root = scenes[0]
    split = load_dense_task(kind, "fmnist_scenes", root, "train", n=10, seed=0, image_size=64, **OFFLINE)
    assert len(split.dataset) == 10 and split.provenance["key"] == scenes[2]["key"]
    x, target = split.dataset[3]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert x.min() == -1  # black canvas background
    if kind == "segmentation":
        assert split.classes[0] == "background" and len(split.classes) == 11 and split.ignore_index == 255
        assert target["mask"].shape == (64, 64) and target["mask"].dtype == torch.int64
        assert set(target["mask"].unique().tolist()) <= set(range(11)) | {255} and (target["mask"] > 0).any()
    elif kind == "detection":
        assert split.classes[1] == "Trouser" and split.ignore_index is None
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
        assert target["labels"].dtype == torch.int64 and target["labels"].max() <= 9
    else:
        assert len(split.classes) == 10 and 0 <= target["label"] <= 9


def test_boxes_and_masks_follow_the_resize(scenes):
    folder = scenes[1]
    raw = coco_dataset(folder / "coco" / "images" / "train", folder / "coco" / "annotations" / "instances_train.json")
    full, half = (DenseView(raw.dataset, "detection", s, np.arange(4), raw.label_map) for s in (64, 32))
    for i in range(4):
        assert torch.allclose(half[i][1]["boxes"], full[i][1]["boxes"] / 2)
        assert torch.equal(half[i][1]["labels"], full[i][1]["labels"])
    voc = VOCSegmentation(str(folder), year="2012", image_set="train")
    mask = DenseView(voc, "segmentation", 32, np.arange(1))[0][1]["mask"]
    assert mask.shape == (32, 32) and set(mask.unique().tolist()) <= set(np.unique(np.asarray(voc[0][1])).tolist())


def test_scene_canvas_follows_image_size(scenes, small_counts):
    split = load_dense_task("detection", "fmnist_scenes", scenes[0], "test", n=0, seed=0, image_size=32, **OFFLINE)
    x, target = split.dataset[0]
    assert len(split.dataset) == N_TEST and split.provenance["canvas"] == 32 and x.shape == (3, 32, 32)
    assert split.provenance["key"] != scenes[2]["key"] and 0 < target["boxes"].max() <= 32


def test_scene_subset_larger_than_generated_names_the_max(scenes, small_counts):
    with pytest.raises(UserError, match=f"at most {N_TEST}"):
        load_dense_task("detection", "fmnist_scenes", scenes[0], "test", n=N_TEST + 1, seed=0, image_size=64,
                        **OFFLINE)


def test_real_voc_folder(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(voc / "JPEGImages" / f"{name}.jpg")
        m = np.zeros((30, 40), np.uint8)
        m[5:25, 10:30], m[2:5, 10:30] = 15, 255  # a person and its void border
        png = Image.fromarray(m, "P")
        png.putpalette(fmnist_scenes.voc_palette())  # without a palette PIL saves a 1-bit PNG
        png.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    split = load_dense_task("segmentation", "real", tmp_path, "test", n=0, seed=0, image_size=20, download=False)
    x, target = split.dataset[1]
    assert len(split.dataset) == 2 and x.shape == (3, 20, 20) and split.classes[15] == "person"
    assert set(target["mask"].unique().tolist()) == {0, 15, 255} and split.provenance["source"] == "voc2012"


def test_real_coco_folder(tmp_path):
    coco = tmp_path / "coco"
    (coco / "train2017").mkdir(parents=True)
    (coco / "annotations").mkdir()
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 40, "height": 20} for i in (1, 2, 3)]
    for im in images:
        Image.new("RGB", (40, 20), (90, 90, 90)).save(coco / "train2017" / im["file_name"])
    cats = [{"id": 44, "name": "bottle"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [4, 2, 10, 6], "area": 60, "iscrowd": 0,
             "segmentation": [[4, 2, 14, 2, 14, 8, 4, 8]]},
            {"id": 2, "image_id": 1, "category_id": 44, "bbox": [20, 10, 8, 8], "area": 64, "iscrowd": 0,
             "segmentation": [[20, 10, 28, 10, 28, 18, 20, 18]]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 20], "area": 800, "iscrowd": 0,
             "segmentation": [[0, 0, 40, 0, 40, 20, 0, 20]]},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [30, 0, 10, 10], "area": 100, "iscrowd": 1,
             "segmentation": [[30, 0, 40, 0, 40, 10, 30, 10]]}]  # a crowd region: to be ignored, not detected
    (coco / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    split = load_dense_task("detection", "real", tmp_path, "train", n=0, seed=0, image_size=20, download=False)
    assert split.classes == ["person", "dog", "bottle"] and len(split.dataset) == 3
    x, target = split.dataset[0]
    assert x.shape == (3, 20, 20)
    assert torch.allclose(target["boxes"], torch.tensor([[2.0, 2, 7, 8], [10, 10, 14, 18]]))  # x scaled by 20/40
    assert target["labels"].tolist() == [1, 2]
    crowd = split.dataset[1][1]  # the crowd region is kept, flagged, so the loss and mAP can ignore it
    assert crowd["labels"].tolist() == [0, 0] and crowd["iscrowd"].tolist() == [0, 1] and crowd["boxes"].shape == (2, 4)
    assert target["iscrowd"].tolist() == [0, 0]
    empty = split.dataset[2][1]  # an image without annotations stays, with 0 boxes
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


@pytest.mark.parametrize(("kind", "path"), [("segmentation", "VOCdevkit/VOC2012"), ("detection", "coco/val2017"),
                                            ("classification", "imagenette2-160")])
def test_real_missing_names_the_path(tmp_path, kind, path):
    with pytest.raises(UserError) as e:
        load_dense_task(kind, "real", tmp_path, "test", n=0, seed=0, image_size=32, download=False)
    assert str(tmp_path / path) in str(e.value) and "\n" not in str(e.value)


def test_seeded_subset():
    a, b, c = seeded_subset(100, 10, 0), seeded_subset(100, 10, 0), seeded_subset(100, 10, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and len(set(a.tolist())) == 10
    assert np.all(np.diff(a) > 0) and np.array_equal(seeded_subset(5, 9, 0), np.arange(5))
    assert np.array_equal(seeded_subset(5, 0, 0), np.arange(5))


def test_stream_frames_record_each_tasks_seeded_subset(scenes, small_counts):
    from benchmark.streams.dense_suite import DenseSuiteConfig, dense_suite

    bench = dense_suite(DenseSuiteConfig(train_per_task=10, test_per_task=6), seed=3, data_root=scenes[0], **OFFLINE)
    for split, n, total in (("train", 10, N_TRAIN), ("test", 6, N_TEST)):
        frame = bench.frames[split]
        for t, kind in enumerate(KIND_ORDER):
            rows = frame[frame.task_id == t]
            assert (rows["kind"] == kind).all()
            assert rows["index"].tolist() == seeded_subset(total, n, 3 + 1000 * t).tolist()


def test_validation_split_holds_train_images_outside_the_training_subset(scenes, small_counts):
    """--dense_suite.eval-split val: tuning never reads a test image nor a training image of the run."""
    from benchmark.streams.dense_suite import DenseSuiteConfig, dense_suite

    val = dense_suite(DenseSuiteConfig(train_per_task=16, test_per_task=5, eval_split="val"), seed=3,
                      data_root=scenes[0], **OFFLINE)
    for t, kind in enumerate(KIND_ORDER):
        train = set(val.frames["train"].query("task_id == @t")["index"])
        held = set(val.frames["test"].query("task_id == @t")["index"])
        assert len(train) == 16 and len(held) == 5 and not train & held
        assert train == set(seeded_subset(N_TRAIN, 16, 3 + 1000 * t).tolist())  # the same training subset
        assert val.provenance["test"]["tasks"][kind]["split"] == "val"  # read from the train files
    with pytest.raises(UserError, match="no validation images"):
        dense_suite(DenseSuiteConfig(train_per_task=0, test_per_task=5, eval_split="val"), seed=3,
                    data_root=scenes[0], **OFFLINE)


def test_train_size_per_task(scenes, small_counts):
    from benchmark.streams.dense_suite import DenseSuiteConfig, dense_suite

    bench = dense_suite(DenseSuiteConfig(train_per_task=(10, 14, 6), test_per_task=4), seed=3, data_root=scenes[0],
                        **OFFLINE)
    assert bench.frames["train"].groupby("task_id").size().tolist() == [10, 14, 6]
    assert bench.frames["test"].groupby("task_id").size().tolist() == [4, 4, 4]
    with pytest.raises(UserError, match="one size or 3"):
        DenseSuiteConfig(train_per_task=(10, 14))


@pytest.mark.parametrize("name", DENSE_KINDS.names())
def test_every_dense_kind_declares_a_task_kinds_parameters_and_its_short_name(name):
    """A dense kind's data (benchmark/data/dense_kinds) builds a valid TaskSpec of the task kind it names (its own
    name unless it declares `task_kind`), and the stream takes it as a task."""
    kind = dense_kind(name)
    spec = TaskSpec(f"t_{kind.short}", kind=kind.task_kind or name,
                    params=kind.spec_params(["a", "b", "c"], DenseSuiteConfig()))
    classes = spec.params.num_labels if spec.kind == "multilabel" else spec.params.num_classes
    assert classes == 3 and len(kind.short) == 3
    assert DenseSuiteConfig(tasks=name).kinds == (name,)


def test_an_unknown_dense_kind_or_source_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="unknown dense task kind 'depth'; known: classification, detection"):
        load_dense_task("depth", "real", tmp_path, "test", n=0, seed=0, image_size=32)
    with pytest.raises(UserError, match="unknown dense source 'kitti'; known: fmnist_scenes, real"):
        load_dense_task("detection", "kitti", tmp_path, "test", n=0, seed=0, image_size=32)
