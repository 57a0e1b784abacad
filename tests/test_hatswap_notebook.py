"""The Hat Swap notebooks' options (issue: a profile that reproduces their table): the one-logit sigmoid head and its
metric and LwF term, class-balanced sampling, the step schedule and fresh optimizer per task, the options a strategy
cannot honour, the dinov2_vitb14 backbone at 32 px, and the `hatswap-notebook` profile end to end on generated
CIFAR-10 files and a tiny random-init checkpoint of the same timm architecture."""

import collections
import json
import math
import types

import pytest
import safetensors.torch
import timm
import torch
from avalanche.core import SupervisedPlugin
from timm.layers import resample_abs_pos_embed

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.harness_plugins import FreshOptimizer, StepLR, schedule_plugins
from benchmark.harness.run import run
from benchmark.harness.sampling import InterleavedTaskBatches
from benchmark.models import build_model
from benchmark.registry import StrategyMeta
from benchmark.tasks import TaskCriterion, TaskSpec, kind_of
from tests.test_data import cifar_tarball_root

SIGMOID = TaskSpec("t", kind="binary_sigmoid")
TINY_DINOV2 = {"embed_dim": 16, "depth": 1, "num_heads": 2}  # vit_base_patch14_dinov2 of test size, at its 518 px


def test_sigmoid_head_loss_metric_and_distillation_hand_computed():
    kind = kind_of(SIGMOID)
    z, y = torch.tensor([[2.0], [-1.0], [0.5], [0.0]]), torch.tensor([1, 1, 0, 0])
    sig = [1 / (1 + math.exp(-v)) for v in (2.0, -1.0, 0.5, 0.0)]
    bce = -(math.log(sig[0]) + math.log(sig[1]) + math.log(1 - sig[2]) + math.log(1 - sig[3])) / 4
    assert SIGMOID.n_outputs == 1 and kind.make_head(SIGMOID, 5).out_features == 1
    assert float(kind.loss(z, y, SIGMOID)) == pytest.approx(bce, rel=1e-6)
    assert float(TaskCriterion([SIGMOID] * 3)(z, y)) == pytest.approx(bce, rel=1e-6)  # the template's criterion
    metric = kind.metric(SIGMOID)
    metric.update(z, y)  # predictions [z > 0] = 1, 0, 1, 0 → right, wrong, wrong, right; z = 0 is σ = 0.5: negative
    assert metric.compute() == {"accuracy": 0.5}
    assert kind.predict(z, SIGMOID).tolist() == [1, 0, 1, 0]
    T, zs, zt = 2.0, torch.tensor([[0.3], [-2.0]]), torch.tensor([[1.5], [0.4]])
    hand = 0.0
    for s, t in zip(zs.flatten().tolist(), zt.flatten().tolist(), strict=True):
        p, q = 1 / (1 + math.exp(-s / T)), 1 / (1 + math.exp(-t / T))
        hand += T**2 * (q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))) / 2
    assert float(kind.distill(zs, zt, SIGMOID, T)) == pytest.approx(hand, rel=1e-5)
    assert float(kind.distill(zt, zt, SIGMOID, T)) == pytest.approx(0.0, abs=1e-7)
    labels = torch.tensor([0, 1, 1])
    perfect = kind.metric(SIGMOID)
    perfect.update(kind.as_output(labels, SIGMOID), labels)  # what the trivial reference scores with
    assert perfect.compute()["accuracy"] == 1.0


def test_class_balanced_draws_balance_each_tasks_classes():
    torch.manual_seed(0)
    tasks = [0] * 3000 + [1] * 300  # task 0: 1 positive to 2 negatives; task 1: 1 to 9
    targets = [int(i % 3 == 0) for i in range(3000)] + [int(i % 10 == 0) for i in range(300)]
    sampler = InterleavedTaskBatches(tasks, batch_size=64, targets=targets)
    order = [i for b in sampler for i in b]
    per_task = collections.Counter(tasks[i] for i in order)
    assert per_task == {0: 3000, 1: 300} and len(list(sampler)) == len(sampler) == -(-3300 // 64)
    assert len(set(order)) < len(order)  # drawn with replacement
    for t, n in per_task.items():
        positives = sum(targets[i] for i in order if tasks[i] == t)
        assert abs(positives - n / 2) < 5 * math.sqrt(n / 4), (t, positives)  # 1 : 1 within 5 σ (was 1 : 2, 1 : 9)
    plain = [i for b in InterleavedTaskBatches(tasks, batch_size=64) for i in b]
    assert sorted(plain) == list(range(3300))  # without targets: each sample once, as before


def _fake_strategy(model):
    return types.SimpleNamespace(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.5))


def test_step_schedule_restarts_every_experience_with_a_fresh_optimizer():
    cfg = types.SimpleNamespace(lr_schedule="step", lr_step_size=2, lr_gamma=0.1, epochs=5, fresh_optimizer=True)
    plugins = schedule_plugins(cfg, StrategyMeta(), 3)
    assert [type(p) for p in plugins] == [FreshOptimizer, StepLR]
    model = torch.nn.Linear(2, 1)
    strategy, steps = _fake_strategy(model), []
    for _ in range(3):  # 3 experiences × 5 epochs, one optimizer step per epoch
        for p in plugins:
            p.before_training_exp(strategy)
        for _ in range(5):
            for p in plugins:
                p.before_training_epoch(strategy)
            model(torch.ones(1, 2)).sum().backward()
            strategy.optimizer.step()
            steps.append(int(strategy.optimizer.state[model.weight]["step"]))
            for p in plugins:
                p.after_training_epoch(strategy)
    assert plugins[1].history == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005] * 3)  # torch's StepLR(2, 0.1) per task
    assert steps == [1, 2, 3, 4, 5] * 3 and plugins[0].resets == 2  # Adam's step count restarts with each task


@pytest.mark.parametrize("strategy,flags,message", [
    ("replay", ["--sampler", "class-balanced"], "--sampler class-balanced cannot apply to --strategy replay"),
    ("lwf+replay", ["--sampler", "class-balanced"], "cannot apply to --strategy lwf\\+replay"),
    ("progressive", ["--hidden", ""], "--strategy progressive builds on the shared hidden layers"),
])
def test_options_a_strategy_cannot_honour_are_one_error_line(strategy, flags, message, tiny, capsys):
    with pytest.raises(UserError, match=message):
        parse_config(tiny("--strategy", strategy, *flags))
    assert main(["run", *tiny("--strategy", strategy, *flags)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]


class LabelCount(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.seen = collections.Counter()

    def after_training_iteration(self, strategy, **kwargs):
        self.seen.update(strategy.mb_y.tolist())


@pytest.mark.parametrize("strategy", ["lwf", "joint"])
def test_sigmoid_heads_train_class_balanced_under_lwf_and_joint(strategy, tiny):
    """LwF's binary KL on single logits, joint's interleaved batches drawn class-balanced, with the notebooks'
    options on the smoke profile: the training batches hold positives and negatives 1 : 1, not the data's 1 : 2."""
    cfg, _ = parse_config(tiny("--strategy", strategy, "--binary_tasks.head", "sigmoid", "--hidden", "",
                               "--sampler", "class-balanced", "--lr-schedule", "step", "--lr-step-size", "1",
                               "--fresh-optimizer", "--epochs", "2"))
    probe = LabelCount()
    folder, status = run(cfg, extra_plugins=[probe])
    summary = json.loads((folder / "summary.json").read_text())
    assert status == "done" and all(0 <= v <= 1 for v in summary["final"])
    assert "class-balanced sampling" in summary["training"] and "×0.1 every 1 epoch," in summary["training"]
    n = sum(probe.seen.values())
    assert n == 2 * 3 * 90 and abs(probe.seen[1] - n / 2) < 4 * math.sqrt(n / 4)  # shuffled: exactly n / 3


def _tiny_dinov2(path, seed=0):
    torch.manual_seed(seed)
    vit = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, **TINY_DINOV2)
    safetensors.torch.save_file(vit.state_dict(), str(path))
    return vit.state_dict()


def _size_flags(**extra) -> list[str]:
    return [a for k, v in (TINY_DINOV2 | extra).items() for a in (f"--dinov2_vitb14.{k.replace('_', '-')}", str(v))]


def test_dinov2_vitb14_at_32px_resamples_the_position_embeddings_once(tmp_path, tiny):
    weights = tmp_path / "dinov2.safetensors"
    saved = _tiny_dinov2(weights)
    assert saved["pos_embed"].shape[1] == 1 + 37 * 37  # saved at the architecture's 518 px
    cfg, _ = parse_config(tiny("--backbone", "dinov2_vitb14", "--backbone-weights", str(weights),
                               *_size_flags(img_size=32), "--hidden", "", "--binary_tasks.head", "sigmoid"))
    model, ident = build_model(cfg, [SIGMOID] * 3, image_size=28, in_chans=1)
    expected = resample_abs_pos_embed(saved["pos_embed"], new_size=[2, 2], num_prefix_tokens=1)
    assert torch.allclose(model.backbone.vit.pos_embed, expected) and ident["patch_grid"] == [2, 2]
    assert ident["input"]["size"] == [32, 32] and ident["timm_arch"] == "vit_base_patch14_dinov2.lvd142m"
    assert len(model.shared) == 0 and model.heads[0].in_features == 16  # Linear(D, 1) on the class token
    assert torch.equal(model.backbone.vit.blocks[0].ls1.gamma, saved["blocks.0.ls1.gamma"])


def test_profile_names_every_notebook_setting():
    cfg, _ = parse_config(["--profile", "hatswap-notebook", "--strategy", "naive"])
    got = cfg.to_dict()
    assert {k: got[k] for k in ("binary_tasks.source", "binary_tasks.train_per_task", "binary_tasks.test_per_task",
                                "binary_tasks.head", "backbone", "dinov2_vitb14.img_size", "backbone_mode", "hidden",
                                "optimizer", "lr", "weight_decay", "lr_schedule", "lr_step_size", "lr_gamma",
                                "fresh_optimizer", "sampler", "epochs", "batch_size", "published")} == {
        "binary_tasks.source": "cifar10", "binary_tasks.train_per_task": 0, "binary_tasks.test_per_task": 0,
        "binary_tasks.head": "sigmoid", "backbone": "dinov2_vitb14", "dinov2_vitb14.img_size": 32,
        "backbone_mode": "finetune", "hidden": [], "optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4,
        "lr_schedule": "step", "lr_step_size": 3, "lr_gamma": 0.1, "fresh_optimizer": True,
        "sampler": "class-balanced", "epochs": 5, "batch_size": 128, "published": "hatswap-notebooks"}
    profile = json.loads((__import__("benchmark.config").config.PROFILE_DIR / "hatswap-notebook.json").read_text())
    for quoted in ("0.53", "0.67", "0.92", "0.98", "0.87"):
        assert quoted in profile["description"]
    for strategy in profile["strategies"]:
        parse_config(["--profile", "hatswap-notebook", "--strategy", strategy])


def test_profile_end_to_end_on_generated_cifar_and_a_tiny_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = cifar_tarball_root(tmp_path, monkeypatch)
    weights = tmp_path / "dinov2_tiny.safetensors"
    _tiny_dinov2(weights, seed=1)
    out = tmp_path / "out"
    assert main(["batch", "--profile", "hatswap-notebook", "--strategies", "naive,joint", "--seeds", "0",
                 "--data-root", str(root), "--out-dir", str(out), "--no-download", "--backbone-weights", str(weights),
                 *_size_flags(), "--epochs", "1", "--batch-size", "16", "--device", "cpu"]) == 0
    record = json.loads((out / "runs" / "binary_tasks" / "naive" / "seed0" / "config.json").read_text())
    assert record["config"]["sampler"] == "class-balanced" and record["backbone"]["patch_grid"] == [2, 2]
    report = (out / "REPORT.md").read_text()
    assert "published numbers beside the measured (hatswap-notebooks)" in report
    assert "| naive | published (notebook 001, after the third task) | 0.530 | 0.670 | 0.920 |" in report
    assert "| joint | published (notebook 002" in report and "| 0.980 | 0.870 | not printed |" in report
    assert "| naive | measured (1 seed) |" in report and "| joint | measured (1 seed) |" in report


def test_profile_without_weights_stops_before_its_first_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    out = tmp_path / "out"
    assert main(["batch", "--profile", "hatswap-notebook", "--out-dir", str(out), "--no-download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "timm/vit_base_patch14_dinov2.lvd142m" in err[0] and not out.exists()


def test_criterion_refuses_mixing_sigmoid_and_softmax_heads():
    with pytest.raises(UserError, match="must all be packed rows"):
        TaskCriterion([SIGMOID, TaskSpec("s", kind="binary")])
