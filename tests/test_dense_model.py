"""The dense suite's model: feature-map backbones, per-sample head routing, EfficientNet-B0 + FPN size and weights;
the cosine schedules (per experience, and over the whole stream) and the single-task restart plugin."""

import json
import math
import types

import pytest
import timm
import torch
from avalanche.core import SupervisedPlugin

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.harness_plugins import CosineLR
from benchmark.harness.run import run
from benchmark.models.backbone import BackboneView
from benchmark.models.backbone_training import apply_last_k
from benchmark.models.efficientnet_b0_fpn import EfficientNetFPN
from benchmark.models.hatswap_net import build_net
from benchmark.registry import BACKBONES
from benchmark.streams.dense_suite import KIND_ORDER
from benchmark.tasks import TaskSpec, task_kind
from strategies.single_task import RestartEachExperience


def specs(size=64, grid=8, classes=(11, 10, 10)):
    out = []
    for t, (kind, c) in enumerate(zip(KIND_ORDER, classes, strict=True)):
        params = {"segmentation": {"num_classes": c, "image_size": size},
                  "detection": {"num_classes": c, "image_size": size, "grid": grid, "max_boxes": 4},
                  "classification": {"num_classes": c}}[kind]
        out.append(TaskSpec(name=f"t{t}", kind=kind, params=params))
    return out


def vit_tiny(size=64, patch=8):
    cfg = BACKBONES.get("vit_tiny").config_cls(patch_size=patch, embed_dim=32, depth=2, num_heads=2)
    return BACKBONES.get("vit_tiny").build(cfg, image_size=size, in_chans=3).module


def test_vit_patch_tokens_become_a_feature_map():
    fmap = BackboneView(vit_tiny(64, 8), "map")
    out = fmap(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 32, 8, 8) and fmap.out_channels == 32
    # token k (row-major) of the ViT's output is pixel (k // 8, k % 8) of the map
    tokens = fmap.body.forward_features(torch.zeros(1, 3, 64, 64))[:, fmap.body.num_prefix_tokens:]
    assert torch.allclose(fmap(torch.zeros(1, 3, 64, 64))[0, :, 2, 5], tokens[0, 2 * 8 + 5])


def test_last_k_on_a_backbone_without_blocks_is_refused():
    cnn = BACKBONES.get("small_cnn").build(BACKBONES.get("small_cnn").config_cls(), image_size=28, in_chans=1).module
    with pytest.raises(UserError, match="--backbone-mode last-k needs a backbone with a token sequence.*SmallCnn"):
        apply_last_k(cnn, 1)


def test_each_sample_goes_through_its_own_head_and_outputs_are_packed():
    torch.manual_seed(0)
    tasks = specs()
    net = build_net(BackboneView(vit_tiny(), "map"), tasks).eval()
    x, labels = torch.randn(6, 3, 64, 64), torch.tensor([2, 0, 1, 1, 0, 2])
    out = net(x, labels)
    assert out.shape == (6, max(net.head_dims)) and net.head_dims == [11 * 64 * 64, 15 * 8 * 8, 10]
    for i, t in enumerate(labels.tolist()):
        alone = net.forward_single_task(x[i: i + 1], t)[0]
        assert torch.allclose(out[i, : net.head_dims[t]], alone, atol=1e-5)
        assert (out[i, net.head_dims[t]:] == 0).all()
    seg = task_kind("segmentation").unpack_output(out[1:2], tasks[0])
    assert seg.shape == (1, 11, 64, 64)  # upsampled to the input size


def test_distill_dispatches_to_the_task_kind():
    tasks = specs()
    net = build_net(BackboneView(vit_tiny(), "map"), tasks)
    s, t = torch.randn(2, net.head_dims[1]), torch.randn(2, net.head_dims[1])
    assert net.distill(1, s, t, 2.0) == pytest.approx(float(task_kind("detection").distill(s, t, tasks[1], 2.0)))


def test_last_k_trains_only_the_last_blocks_of_a_vit_feature_map():
    fmap = BackboneView(vit_tiny(), "map")
    apply_last_k(fmap.body, 1)
    trainable = {n.split(".")[2] for n, p in fmap.named_parameters() if p.requires_grad and ".blocks." in n}
    assert trainable == {"1"}


def test_efficientnet_b0_fpn_stays_under_8M_parameters(capsys):
    entry = BACKBONES.get("efficientnet_b0_fpn")
    built = entry.build(entry.config_cls(pretrained=False), image_size=64, in_chans=3)
    assert built.width == 128 and built.identity["weights"] == "random init"
    backbone = built.module
    net = build_net(built.view("map"), specs(64, 8, (21, 80, 10)))
    n = sum(p.numel() for p in net.parameters())
    print(f"efficientnet_b0_fpn dense net (seg 21, det 80, cls 10): {n:,} parameters")
    assert 3_000_000 < n < 8_000_000
    fmap = net.backbone(torch.randn(1, 3, 64, 64))
    assert fmap.shape == (1, 128, 8, 8)  # stride 8
    assert backbone(torch.randn(2, 3, 64, 64)).shape == (2, 128)  # pooled, for classification streams


def test_efficientnet_weights_file_is_loaded_through_timm(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("efficientnet_b0", pretrained=False)
    path = tmp_path / "effnet_b0.pth"
    torch.save(ref.state_dict(), path)
    entry = BACKBONES.get("efficientnet_b0_fpn")
    built = entry.build(entry.config_cls(), image_size=64, in_chans=1, weights=str(path))
    backbone = built.module
    assert isinstance(backbone, EfficientNetFPN) and "sha256" in str(built.identity)
    assert torch.equal(backbone.body.conv_stem.weight, ref.conv_stem.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv_stem.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="does not hold efficientnet_b0 weights"):
        entry.build(entry.config_cls(), image_size=64, in_chans=3, weights=str(bad))


def _fake_strategy(model):
    opt = torch.optim.AdamW(model.parameters(), lr=0.8)
    return types.SimpleNamespace(model=model, optimizer=opt, train_epochs=2)


def test_cosine_schedule_restarts_every_experience():
    expected = [0.8 * 0.5 * (1 + math.cos(math.pi * e / 2)) for e in (0, 1) * 3]
    strategy, plugin = _fake_strategy(torch.nn.Linear(2, 2)), CosineLR()
    for _ in range(3):  # 3 experiences × 2 epochs
        plugin.before_training_exp(strategy)
        for _ in range(2):
            plugin.before_training_epoch(strategy)
            plugin.after_training_epoch(strategy)
    assert plugin.history == pytest.approx(expected)


class LrProbe(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.lrs = []

    def after_training_epoch(self, strategy, **kwargs):
        self.lrs.append(strategy.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("strategy", ["naive", "lwf", "replay", "joint"])
def test_every_strategy_gets_the_baselines_per_task_schedule(strategy, tiny_dense):
    """Sequential strategies must not train later tasks at a lower learning rate than their single-task baselines
    (that would count under-training as forgetting): one cosine per experience, for every strategy."""
    def lrs(name):
        probe = LrProbe()
        cfg, _ = parse_config(tiny_dense("--strategy", name, "--epochs", "3", "--lr", "0.01", "--lr-schedule",
                                         "cosine"))
        run(cfg, extra_plugins=[probe])
        return probe.lrs

    per_task = [0.01 * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]
    assert lrs("single_task") == pytest.approx(per_task * 3)
    assert lrs(strategy) == pytest.approx(per_task * (1 if strategy == "joint" else 3))



# ½(1 + cos(π k / 6)) × 0.01 at the stream's epoch k = 0..5, by hand: cos = 1, √3/2, ½, 0, −½, −√3/2
STREAM_COSINE_3X2 = [0.01, 0.0093301270, 0.0075, 0.005, 0.0025, 0.00066987298]


def SGDR(n: int, k: int) -> float:  # noqa: N802  (GDumb's SGDR: step k of a cycle of n, from 1 down to 1/100)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * k / n))


@pytest.mark.parametrize("strategy,expected,schedule", [
    ("naive", STREAM_COSINE_3X2, "one cosine over all 6 epochs of the stream's 3 experiences, not restarted"),
    ("lwf", STREAM_COSINE_3X2, "one cosine over all 6 epochs of the stream's 3 experiences, not restarted"),
    ("joint", [0.01, 0.005], "one cosine over the run's epochs"),  # one experience of 2 epochs
    ("single_task", [0.01, 0.005] * 3, "cosine restarted with the model every experience"),  # each task alone
    # gdumb retrains from scratch, for its own epochs (6 here) with its own SGDR, or with the run's schedule over them
    ("gdumb --gdumb.epochs 6", [0.01 * f for f in (0.1, 1, 1, SGDR(2, 1), 1, SGDR(4, 1))] * 3,
     "SGDR from a warm-start epoch, T_0 = 1, T_mult = 2), 6 epochs over its memory per experience"),
    ("gdumb --gdumb.epochs 6 --gdumb.schedule run", [0.005 * (1 + math.cos(math.pi * e / 6)) for e in range(6)] * 3,
     "cosine restarted with the model every experience), 6 epochs over its memory per experience"),
])
def test_cosine_stream_is_one_cosine_over_the_whole_training(strategy, expected, schedule, tiny):
    """`--lr-schedule cosine-stream` (the dense suite document's CosineAnnealingLR over the total epochs): over the
    fixture's 3 experiences × 2 epochs, lr = ½(1 + cos(π k / (T·E))) · lr at the stream's epoch k, never restarted;
    T is the stream's length. A training of its own (joint, each single-task baseline, each gdumb retraining) gets
    its own cosine over its E epochs. The summary's training line says which."""
    probe = LrProbe()
    cfg, _ = parse_config(tiny("--strategy", *strategy.split(), "--epochs", "2", "--lr", "0.01", "--lr-schedule",
                               "cosine-stream"))
    folder, _ = run(cfg, extra_plugins=[probe])
    assert probe.lrs == pytest.approx(expected, rel=1e-7)
    assert f"adam lr 0.01 ({schedule}" in json.loads((folder / "summary.json").read_text())["training"]

def test_single_task_restarts_from_the_initial_weights_with_a_fresh_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    strategy, plugin = _fake_strategy(model), RestartEachExperience()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    plugin.before_training_exp(strategy)  # experience 0: remembers the initial weights
    model(torch.randn(4, 3)).sum().backward()
    strategy.optimizer.step()
    assert not torch.equal(model.weight, initial["weight"]) and strategy.optimizer.state
    plugin.before_training_exp(strategy)  # experience 1: back to them
    assert all(torch.equal(model.state_dict()[k], v) for k, v in initial.items())
    assert not strategy.optimizer.state and plugin.restarts == 1
    assert strategy.optimizer.param_groups[0]["params"][0] is model.weight  # same tensors, optimizer still valid
