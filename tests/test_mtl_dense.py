"""Dense multi-task learning: the dense_tasks set (every scene labelled for segmentation, detection and
classification), map-reading heads in `MultiTaskModel` for every architecture, the trivial references of dense
kinds, and an mtl-dense batch's plan (its derived single-task baselines)."""

import json
from pathlib import Path

import pytest
import torch

from benchmark.mtl import ARCHITECTURES, SCHEDULES, MultiTaskModel
from benchmark.mtl.batch import plan
from benchmark.mtl.references import CONSTANT, NEAREST
from benchmark.mtl.registries import TASK_SETS
from benchmark.mtl.task_heads import FanInScale, MapDecoder
from benchmark.mtl.task_sets.dense_tasks import TASK_NAMES, DenseTasksConfig
from benchmark.mtl.task_sets.mtl_data import MTLData
from benchmark.mtl.train import train_stages
from benchmark.tasks import kind_of
from tests.mtl_fixtures import tiny_cfg

SIZE, GRID = 16, 2
PROFILE = Path(__file__).resolve().parents[1] / "benchmark" / "profiles" / "mtl-dense.json"


def dense_data(root, seed=0, **kw) -> MTLData:
    cfg = DenseTasksConfig(**({"image_size": SIZE, "grid": GRID, "train_size": 12, "val_size": 4, "test_size": 6}
                              | kw))
    return TASK_SETS.get("dense_tasks").build(cfg, seed=seed, data_root=root, download=False, apt_install=False)


def dense_model(data, architecture="shared-bottom", weighting="equal"):
    return MultiTaskModel(data.tasks, architecture=architecture, loss_weighting=weighting, backbone="small_cnn",
                          backbone_args={"channels": [4]}, input_shape=(3, SIZE, SIZE), pooling="flatten",
                          shared_layers=[8], task_layers=[8], num_experts=2)


def test_every_scene_is_labelled_for_every_task_consistently(fmnist_root):
    data = dense_data(fmnist_root)
    assert [t.name for t in data.tasks] == list(TASK_NAMES) == ["seg", "det", "cls"]
    assert [t.kind for t in data.tasks] == ["segmentation", "detection", "classification"]
    assert {k: len(v) for k, v in data.x.items()} == {"train": 12, "val": 4, "test": 6}
    seg, det, cls = data.tasks
    for split, x in data.x.items():
        assert x.shape[1:] == (3, SIZE, SIZE) and -1 <= x.min() and x.max() <= 1
        for i in range(len(x)):
            mask = kind_of(seg).unpack_target(data.y[split]["seg"][i], seg)["mask"]
            boxes = kind_of(det).unpack_target(data.y[split]["det"][i], det)
            label = kind_of(cls).unpack_target(data.y[split]["cls"][i], cls)["label"]
            assert len(boxes["labels"]) >= 1 and (mask == label + 1).any()  # the largest item is in the mask
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes["boxes"].tolist()]
            assert int(boxes["labels"][areas.index(max(areas))]) == label
            for (x1, y1, x2, y2), c in zip(boxes["boxes"].long().tolist(), boxes["labels"].tolist(), strict=True):
                assert (mask[y1:y2, x1:x2] == c + 1).any()  # every box holds pixels of its class
            assert (x[i, 0][mask == 0] == -1).all()  # background pixels are the black canvas
    assert not torch.equal(dense_data(fmnist_root, seed=1).x["train"], data.x["train"])  # the seed draws the scenes
    assert torch.equal(dense_data(fmnist_root).x["train"], data.x["train"])


def test_a_dense_head_gives_its_kinds_shape_and_decodes_at_its_grid(fmnist_root):
    data = dense_data(fmnist_root)
    model = dense_model(data)
    out = model(data.x["train"][:3])
    for spec in data.tasks:
        assert out[spec.name].shape == (3, *kind_of(spec).shape(spec))
    grids = {t: next(m for m in model.heads[t].modules() if isinstance(m, MapDecoder)).grid for t in TASK_NAMES}
    assert grids == {"seg": 8, "det": GRID, "cls": 1}  # MAP_GRID; the detection grid; no positions


def test_the_segmentation_loss_alone_trains_the_shared_trunk_and_only_its_own_head(fmnist_root):
    data = dense_data(fmnist_root)
    model = dense_model(data)
    loss = model.task_losses(model(data.x["train"][:4]), {"seg": data.y["train"]["seg"][:4]})["seg"]
    loss.backward()
    backbone = [p for n, p in model.named_parameters() if "body" in n]
    assert backbone and all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.arch.shared_parameters())
    assert all(p.grad is not None for p in backbone) and any(p.grad.abs().sum() > 0 for p in backbone)
    for t in ("det", "cls"):
        assert all(p.grad is None for p in model.heads[t].parameters())


def profile_classifier_loss(root, architecture: str) -> tuple[float, float]:
    """Classification alone on 160 32 px scenes with the profile's trunk (2 blocks → 2 × 128, heads of 64), lr and
    batch, 15 epochs → (final training loss, the labels' entropy ≈ ln 10 = 2.30: what the class prior scores)."""
    cfg = json.loads(PROFILE.read_text())["config"]
    data = dense_data(root, image_size=32, grid=4, train_size=160)
    torch.manual_seed(0)
    model = MultiTaskModel([t for t in data.tasks if t.name == "cls"], architecture=architecture,
                           backbone="small_cnn", backbone_args={"channels": cfg["small_cnn.channels"]},
                           input_shape=(3, 32, 32), pooling=cfg["pooling"],
                           shared_layers=[cfg["shared_width"]] * cfg["shared_layers"], task_layers=cfg["task_layers"])
    stages = SCHEDULES.get("joint").build(None, epochs=15, tasks=("cls",))
    _, epochs, _ = train_stages(model, data, stages, tiny_cfg(lr=cfg["lr"], batch_size=cfg["batch_size"]), "cpu")
    labels = data.y["train"]["cls"][:, 0].long()
    prior = labels.bincount(minlength=10).float() / len(labels)
    return epochs[-1]["train_loss"]["cls"], float(-(prior[prior > 0] * prior[prior > 0].log()).sum())


def test_classification_alone_learns_with_the_profiles_trunk_and_optimiser(fmnist_root):
    """Minibatch Adam must bring the training loss well below the labels' entropy. The committed profile once had
    every classifier stuck there: at lr 0.005 Adam's first steps killed most ReLU units of the trunk and head (logits
    then constant), and the head's default initialisation left logits barely dependent on the input
    (docs/multi-task.md, dense multi-task)."""
    loss, entropy = profile_classifier_loss(fmnist_root, "shared-bottom")
    assert loss < 0.5 * entropy


def test_mtan_classification_alone_learns_at_the_profiles_lr(fmnist_root):
    """MTAN flattens its 8 × 8 attended map into each task's vector (64 × 128 wide, not 128): without the head's
    FanInScale, Adam's steps on that wide first layer (each pre-activation moved 64 times as far per step as on the
    other trunks' vectors) drove every ReLU of the head below zero within a few hundred steps, and the loss stayed
    at the labels' entropy (benchmark/mtl/task_heads.py, FanInScale)."""
    loss, entropy = profile_classifier_loss(fmnist_root, "mtan")
    assert loss < 0.5 * entropy


def test_only_a_head_on_flattened_tokens_scales_its_first_layers_step(fmnist_root):
    """The scale sits in MTAN's map-reading heads on a flattened map alone: its vector heads, its heads with mean
    pooling and every other architecture's heads are the modules they were (their numbers cannot move)."""
    data = dense_data(fmnist_root)

    def scales(architecture, pooling="flatten", tasks=None):
        model = MultiTaskModel(tasks or data.tasks, architecture=architecture, backbone="small_cnn",
                               backbone_args={"channels": [4]}, input_shape=(3, SIZE, SIZE), pooling=pooling,
                               shared_layers=[8], task_layers=[8])
        return {t: [m.tokens for m in h if isinstance(m, FanInScale)] for t, h in model.heads.items()}, model

    flat, model = scales("mtan")
    assert model.arch.out_dim == 8 * model.arch.backbone.n_tokens > 8  # every position's 8 attended features
    assert flat == dict.fromkeys(TASK_NAMES, [model.arch.backbone.n_tokens])
    assert scales("mtan", "mean")[0] == dict.fromkeys(TASK_NAMES, [])
    assert all(scales(a)[0] == dict.fromkeys(TASK_NAMES, []) for a in ARCHITECTURES.names() if a != "mtan")
    assert scales("mtan", tasks=["v"])[0] == {"v": []}


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
@pytest.mark.parametrize("weighting", ["equal", "uncertainty", "pcgrad"])
def test_every_architecture_trains_the_dense_set(architecture, weighting, fmnist_root):
    data = dense_data(fmnist_root)
    torch.manual_seed(0)
    model = dense_model(data, architecture, weighting)
    before = [p.detach().clone() for p in model.parameters()]
    stages = SCHEDULES.get("joint").build(None, epochs=1, tasks=TASK_NAMES)
    rows, epochs, _ = train_stages(model, data, stages, tiny_cfg(batch_size=6), "cpu")
    assert all(torch.isfinite(torch.tensor(v)) for v in epochs[-1]["train_loss"].values())
    assert epochs[-1]["train_loss"].keys() == set(TASK_NAMES)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    final = rows[-1][1]
    assert {t: sorted(final[t]) for t in TASK_NAMES} == {
        "seg": ["loss", "miou"], "det": ["loss", "map", "map_50", "map_75"], "cls": ["loss", "top1", "top5"]}


def test_copying_the_nearest_training_target_scores_perfectly_on_the_training_scenes(fmnist_root):
    data = dense_data(fmnist_root)
    same = MTLData(data.tasks, {"train": data.x["train"], "test": data.x["train"]},
                   {"train": data.y["train"], "test": data.y["train"]})
    nearest, constant = same.references["test"][NEAREST], same.references["test"][CONSTANT]
    assert nearest["seg"]["miou"] == pytest.approx(1.0) and nearest["det"]["map_50"] == pytest.approx(1.0)
    assert nearest["cls"]["top1"] == 1.0
    labels = data.y["train"]["cls"][:, 0].long()
    assert constant == {"cls": pytest.approx({"top1": float((labels == labels.bincount().argmax()).float().mean()),
                                              "top5": constant["cls"]["top5"]})}


def test_the_dense_profile_derives_a_same_trunk_baseline_per_architecture_task_and_seed():
    profile = json.loads(PROFILE.read_text())
    planned = plan(profile, [])
    archs = {e["architecture"] for e in profile["experiments"]}
    baselines = [c for g, c in planned if c.tasks in TASK_NAMES]
    assert len(baselines) == len(archs) * len(TASK_NAMES) * len(profile["seeds"])
    assert {(c.architecture, c.tasks, c.weighting, c.schedule) for c in baselines} == {
        (a, t, "equal", "joint") for a in archs for t in TASK_NAMES}
    assert len(planned) - len(baselines) == len(profile["experiments"]) * len(profile["seeds"])
    assert {"shared-bottom", "mmoe", "cross-stitch", "mtan"} <= archs
    for spec in dense_data_specs():
        assert kind_of(spec).transfer == (spec.primary, False)  # Δm: higher is better for mIoU, mAP, top-1


def dense_data_specs():
    from benchmark.data.dense_sources import dense_kind
    from benchmark.mtl.task_sets.dense_tasks import KINDS
    from benchmark.tasks import TaskSpec

    cfg = DenseTasksConfig(image_size=SIZE, grid=GRID)
    return [TaskSpec(n, kind=k, params=dense_kind(k).spec_params(["background", "a", "b"], cfg))
            for k, n in zip(KINDS, TASK_NAMES, strict=True)]
