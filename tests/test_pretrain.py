"""DINO pretraining (benchmark/pretrain/): the objective's formulas on hand-made tensors, k-NN and the probe on
hand-made features, and a tiny pretraining end to end: its file loads through `--backbone-weights`, a rerun is a
cache hit, an interrupted run resumes to the very same weights."""

import json
import math
import shutil

import pytest
import safetensors.torch
import torch
from torch import nn

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.run import run
from benchmark.models import build_model
from benchmark.pretrain import artifact, pipeline
from benchmark.pretrain import train as train_module
from benchmark.pretrain.config import parse_pretrain_config
from benchmark.pretrain.evaluation import knn_predict, linear_probe_predict
from benchmark.pretrain.head import DinoHead
from benchmark.pretrain.multicrop import CropRecipe, multicrop, random_boxes, resized_crops
from benchmark.pretrain.objective import (
    cosine_schedule,
    dino_loss,
    ema_update,
    koleo_loss,
    momentum_schedule,
    teacher_temp_schedule,
    update_center,
)
from benchmark.pretrain.pipeline import pretrain
from benchmark.tasks import TaskSpec
from tests.conftest import TINY_VIT

LN = math.log


def test_dino_loss_is_the_mean_cross_entropy_over_pairs_of_different_views():
    # K = 2, B = 1, τ_s = τ_t = 1, c = 0: teacher targets q0 = (.5, .5), q1 = (.75, .25); students p0 = (.5, .5),
    # p1 = (.75, .25), p2 (a local view) = (.25, .75). Pairs (t0, s1), (t0, s2), (t1, s0), (t1, s2); not (t0, s0),
    # nor (t1, s1).
    teacher = [torch.tensor([[0.0, 0.0]]), torch.tensor([[LN(3), 0.0]])]
    student = [torch.tensor([[0.0, 0.0]]), torch.tensor([[LN(3), 0.0]]), torch.tensor([[0.0, LN(3)]])]
    h = [-0.5 * LN(0.75) - 0.5 * LN(0.25), -0.5 * LN(0.25) - 0.5 * LN(0.75), LN(2), -0.75 * LN(0.25) - 0.25 * LN(0.75)]
    loss = dino_loss(student, teacher, torch.zeros(1, 2), student_temp=1.0, teacher_temp=1.0)
    assert loss.item() == pytest.approx(sum(h) / 4, rel=1e-6)


def test_dino_loss_centres_and_sharpens_the_teacher_and_averages_the_batch():
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(3, 5, generator=g) for _ in range(2)]
    student = [torch.randn(3, 5, generator=g) for _ in range(4)]
    center, ts, tt = torch.randn(1, 5, generator=g), 0.1, 0.04
    expected = []
    for i, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v != i:
                for b in range(3):
                    q = torch.exp((t[b] - center[0]) / tt) / torch.exp((t[b] - center[0]) / tt).sum()
                    log_p = s[b] / ts - torch.log(torch.exp(s[b] / ts).sum())
                    expected.append(-(q * log_p).sum().item())
    loss = dino_loss(student, teacher, center, ts, tt)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    student = [s.requires_grad_() for s in student]
    teacher = [t.requires_grad_() for t in teacher]
    dino_loss(student, teacher, center, ts, tt).backward()
    assert student[0].grad is not None and teacher[0].grad is None  # only the student learns


def test_koleo_is_minus_the_mean_log_distance_to_the_nearest_other_normalised_feature():
    """p0 = (1, 0) and p1 = (0.8, 0.6) are each other's nearest (distance √0.4); p2 = (−1, 0)'s nearest is p1 (its dot
    product −0.8 beats −1: distance √3.6). Scaling a row changes nothing: the features are ℓ2-normalised first."""
    x = torch.tensor([[2.0, 0.0], [0.8, 0.6], [-3.0, 0.0]])
    expected = -(2 * math.log(math.sqrt(0.4)) + math.log(math.sqrt(3.6))) / 3
    assert koleo_loss(x).item() == pytest.approx(expected, abs=1e-6)
    assert koleo_loss(torch.tensor([[1.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])).item() == pytest.approx(
        -math.log(math.sqrt(2)), abs=1e-6)  # every nearest neighbour at 90°
    x.requires_grad_(True)
    koleo_loss(x).backward()
    step = torch.nn.functional.normalize(x.detach() - 0.1 * x.grad, dim=-1)
    assert step[0] @ step[1] < torch.nn.functional.normalize(x.detach(), dim=-1)[0] @ torch.tensor([0.8, 0.6])


def test_koleo_weight_adds_its_term_to_the_loss_and_keys_its_weights(tiny_pretrain, monkeypatch):
    """--koleo-weight w: each step's loss is the DINO loss + w × KoLeo of the student's class tokens, per global view;
    at 0 the recipe (and so every earlier key) is unchanged."""
    plain, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1"))
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--koleo-weight", "0.5"))
    assert "koleo_weight" not in plain.recipe() and cfg.recipe()["koleo_weight"] == 0.5
    seen = []
    monkeypatch.setattr(train_module, "koleo_loss", lambda f: seen.append(f.detach()) or torch.tensor(2.0))
    monkeypatch.setattr(train_module, "dino_loss", lambda *a: torch.tensor(1.0, requires_grad=True))
    state = train_module.build_state(cfg, 28, 1)
    views = multicrop(torch.rand(8, 1, 28, 28) * 2 - 1, train_module.crop_recipe(cfg, 28, 1), torch.Generator())
    with torch.no_grad():  # before the step changes the student: its class tokens of every view
        tokens = [state.student.backbone(v) for v in views]
    assert train_module.train_step(state, views, cfg, train_module.schedules(cfg, 1), 0) == \
        pytest.approx(1.0 + 0.5 * (2.0 + 2.0))
    assert len(seen) == 2 and all(torch.allclose(f, t, atol=1e-5) for f, t in zip(seen, tokens[:2], strict=True))
    assert not torch.allclose(seen[0], tokens[2][:8], atol=1e-3)  # a local view's tokens differ: not those
    with pytest.raises(UserError, match="needs --batch-size 2 or more"):  # a lone image has no other neighbour
        parse_pretrain_config(tiny_pretrain("--koleo-weight", "0.1", "--batch-size", "1"))


def test_centre_update_is_a_moving_average_of_the_teacher_batch_mean():
    center = torch.tensor([[1.0, 2.0]])
    outs = [torch.tensor([[3.0, 4.0], [5.0, 6.0]]), torch.tensor([[7.0, 8.0], [9.0, 10.0]])]  # mean (6, 7)
    assert torch.allclose(update_center(center, outs, 0.9), torch.tensor([[0.9 * 1 + 0.6, 0.9 * 2 + 0.7]]))


def test_ema_moves_every_teacher_parameter_towards_the_student():
    teacher, student = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        teacher.weight[:] = torch.tensor([[1.0, 2.0]])
        teacher.bias[:] = 0.0
        student.weight[:] = torch.tensor([[3.0, -2.0]])
        student.bias[:] = 10.0
    ema_update(teacher, student, 0.75)
    assert torch.allclose(teacher.weight, torch.tensor([[1.5, 1.0]])) and torch.allclose(teacher.bias,
                                                                                          torch.tensor([2.5]))
    assert torch.equal(student.weight, torch.tensor([[3.0, -2.0]]))


def test_ema_over_many_parameters_equals_the_per_parameter_update_bit_for_bit():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 3))
    student = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 3))
    teacher.requires_grad_(False)  # as the DINO teacher
    expected = [t.detach() * 0.9876 + s.detach() * (1 - 0.9876) for t, s in
                zip(teacher.parameters(), student.parameters(), strict=True)]
    looped = [t.detach().clone().mul_(0.9876).add_(s.detach(), alpha=1 - 0.9876) for t, s in
              zip(teacher.parameters(), student.parameters(), strict=True)]
    ema_update(teacher, student, 0.9876)
    assert all(torch.equal(t, e) for t, e in zip(teacher.parameters(), looped, strict=True))
    assert all(torch.allclose(t, e) for t, e in zip(teacher.parameters(), expected, strict=True))
    with pytest.raises(ValueError, match="parameters"):
        ema_update(teacher, nn.Linear(8, 16), 0.5)


def test_a_batch_norm_head_spreads_nearly_identical_features_apart():
    """--head-bn (DINO's use_bn_in_head): features that differ by 1e-3 around one shared vector (a random ViT's
    class tokens are much alike) give nearly one u without BN; with BN each hidden unit is standardised over the batch,
    so the u of different images point apart."""
    torch.manual_seed(0)
    z = torch.randn(1, 16) + 1e-3 * torch.randn(64, 16)

    def mean_cosine(head):
        u = torch.nn.functional.normalize(head.mlp(z), dim=-1)
        return float((u @ u.T).mean())

    plain, batch_norm = DinoHead(16, 32, 24, 8), DinoHead(16, 32, 24, 8, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in batch_norm.mlp) == 2 and not any(
        isinstance(m, nn.BatchNorm1d) for m in plain.mlp)
    assert mean_cosine(plain) > 0.99 and mean_cosine(batch_norm.train()) < 0.5
    # a recipe field added later: off, it stays out of the key (weights trained before it keep theirs); on, it is in
    assert "head_bn" not in parse_pretrain_config([])[0].recipe()
    assert parse_pretrain_config(["--head-bn"])[0].recipe()["head_bn"] is True


def test_unfused_attention_on_the_cpu_computes_the_same_vit():
    """Pretraining on a CPU swaps timm's fused attention kernel for q·kᵀ → softmax → ·v (faster there): every
    attention module is switched, and the class tokens stay the same function of the input."""
    from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny
    from benchmark.pretrain.train import unfuse_attention

    torch.manual_seed(0)
    vit = create_vit_tiny(VitTinyConfig(), 28, 1, dynamic_img_size=True).eval()
    x = torch.randn(5, 1, 28, 28)
    attention = [m for m in vit.modules() if hasattr(m, "fused_attn")]
    assert len(attention) == 4 and all(m.fused_attn for m in attention)
    with torch.no_grad():
        fused = vit(x)
        unfuse_attention(vit)
        assert not any(m.fused_attn for m in attention)
        assert torch.allclose(vit(x), fused, atol=1e-5) and not torch.equal(fused, torch.zeros_like(fused))


def test_schedules_follow_their_cosine_and_linear_formulas():
    m = momentum_schedule(0.996, epochs=2, steps_per_epoch=5)  # I = 10 steps
    assert len(m) == 10 and m[0] == pytest.approx(0.996) and m[5] == pytest.approx(1 - 0.004 / 2)
    assert m[3] == pytest.approx(1 - 0.004 * (math.cos(math.pi * 3 / 10) + 1) / 2)
    lr = cosine_schedule(1.0, 0.0, epochs=3, steps_per_epoch=2, warmup_epochs=1)
    assert lr.tolist()[:2] == [0.0, 1.0] and lr[2] == pytest.approx(1.0) and lr[4] == pytest.approx(0.5)
    assert teacher_temp_schedule(0.04, 0.07, warmup_epochs=4, epochs=6).tolist() == pytest.approx(
        [0.04, 0.05, 0.06, 0.07, 0.07, 0.07])


def test_knn_votes_are_weighted_by_exp_similarity_over_temperature():
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    q = torch.tensor([[2.0, 0.0]])  # cosine 1, .8, .6, -1: the top 3 are one 0 and two 1s
    # T = 1: e^1 = 2.72 for class 0 < e^.8 + e^.6 = 4.05 for class 1; T = 0.07: e^(1/.07) outweighs both 1s
    assert knn_predict(train, labels, q, n_classes=2, k=3, temperature=1.0).tolist() == [1]
    assert knn_predict(train, labels, q, n_classes=2, k=3, temperature=0.07).tolist() == [0]


def test_linear_probe_separates_linearly_separable_classes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 2] > 0).long()
    assert (linear_probe_predict(x, y, x, n_classes=2) == y).float().mean() >= 0.95


def test_random_crops_stay_inside_the_image_with_their_area_scale():
    boxes = random_boxes(500, 28, 28, (0.05, 0.4), torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= 28 and boxes[:, 3].max() <= 28
    assert (w * h / 28**2).min() >= 0.05 - 1e-5 and (w * h / 28**2).max() <= 0.4 + 1e-5
    image = torch.rand(1, 1, 28, 28)
    assert torch.allclose(resized_crops(image, torch.tensor([[0.0, 0.0, 28.0, 28.0]]), 28), image, atol=1e-6)


def test_bf16_precision_runs_the_forward_passes_in_bf16_and_keeps_the_weights_and_loss_in_fp32(monkeypatch):
    """--precision bf16: the ViT's and the head's linear layers compute in bf16 under autocast; the parameters, the
    optimizer's state, the centre and what the loss and the centre update are fed stay fp32; the loss is the fp32
    step's to bf16's precision, not bit-equal. fp32 (the default) stays out of the recipe, so weights trained before
    the field existed keep their key. A GPU older than Ampere is refused bf16 in one line."""
    from benchmark.pretrain import train
    from benchmark.pretrain.train import build_state, check_precision, schedules, train_step

    x = torch.rand(8, 1, 28, 28) * 2 - 1
    views = multicrop(x, CropRecipe(global_size=28, local_size=12, local_crops=2, colour=False),
                      torch.Generator().manual_seed(0))

    def one_step(precision):
        cfg = parse_pretrain_config([*TINY_VIT, "--out-dim", "32", "--head-hidden", "16", "--head-bottleneck", "8",
                                     "--precision", precision, "--epochs", "1"])[0]
        state = build_state(cfg, 28, 1)
        dtypes, loss_inputs = set(), set()
        hooks = [m.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
                 for net in (state.student, state.teacher) for m in net.modules() if isinstance(m, nn.Linear)]

        def recording(real):  # the dtypes of every tensor the loss and the centre update are fed
            def fed(*args):
                loss_inputs.update(t.dtype for a in args for t in (a if isinstance(a, list) else [a])
                                   if torch.is_tensor(t))
                return real(*args)
            return fed

        with monkeypatch.context() as m:
            m.setattr(train, "dino_loss", recording(train.dino_loss))
            m.setattr(train, "update_center", recording(train.update_center))
            loss = train_step(state, views, cfg, schedules(cfg, 1), 0)
        for h in hooks:
            h.remove()
        assert loss_inputs == {torch.float32}
        assert all(p.dtype == torch.float32 for p in state.student.parameters())
        assert all(s.dtype == torch.float32 for group in state.optimizer.state.values() for s in group.values()
                   if torch.is_tensor(s) and s.is_floating_point())
        assert state.center.dtype == torch.float32
        return loss, dtypes, cfg

    loss32, dtypes32, cfg32 = one_step("fp32")
    loss16, dtypes16, cfg16 = one_step("bf16")
    assert dtypes32 == {torch.float32} and dtypes16 == {torch.bfloat16}
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=2e-2)
    assert "precision" not in cfg32.recipe() and cfg16.recipe()["precision"] == "bf16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "an old GPU")
    with pytest.raises(UserError, match="--precision fp32"):
        check_precision("bf16", torch.device("cuda"))
    check_precision("fp32", torch.device("cuda"))


@pytest.mark.parametrize("channels", [1, 3])
def test_multicrop_gives_two_global_and_n_local_views_in_the_stream_range(channels):
    x = torch.rand(4, channels, 32, 32) * 2 - 1
    recipe = CropRecipe(global_size=32, local_size=12, local_crops=3, colour=channels == 3)
    views = multicrop(x, recipe, torch.Generator().manual_seed(0))
    assert [v.shape[-1] for v in views] == [32, 32, 12, 12, 12] and all(v.shape[:2] == (4, channels) for v in views)
    assert all(v.min() >= -1 - 1e-6 and v.max() <= 1 + 1e-6 for v in views)
    again = multicrop(x, recipe, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))  # one generator: replayable


def test_pretrained_file_loads_through_the_run_weights_path_and_is_recorded(tiny_pretrain, tiny, capsys, tmp_path,
                                                                           monkeypatch):
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "1", "--eval-train-images", "100"))
    weights, status = pretrain(cfg)
    manifest = json.loads(weights.with_name("vit_tiny.manifest.json").read_text())
    assert status == "done" and weights.suffix == ".safetensors" and not (weights.parent / "checkpoint.pt").exists()
    assert manifest["weights_sha256"] == artifact.sha256_file(weights) and manifest["epochs"] == 1
    assert manifest["device"] == "cpu"  # where the student's parameters trained
    assert set(manifest["evaluation"]["rows"]) == {"DINO pretrained", "random init", "raw pixels"}
    run_cfg, _ = parse_config(tiny("--backbone-weights", str(weights), "--backbone-mode", "frozen"))
    model, _ = build_model(run_cfg, [TaskSpec(name="t0")], image_size=28, in_chans=1)
    saved = safetensors.torch.load_file(str(weights))
    assert all(torch.equal(saved[k], v) for k, v in model.backbone.state_dict().items())
    folder, _ = run(run_cfg)
    backbone = json.loads((folder / "config.json").read_text())["backbone"]
    assert backbone["weights_sha256"] == manifest["weights_sha256"] and backbone["pretraining"]["key"] == \
        manifest["key"]
    assert manifest["weights_sha256"] in json.loads((folder / "summary.json").read_text())["backbone_weights"]
    # the same recipe again is a cache hit, through the CLI too (the file's path on stdout)
    capsys.readouterr()
    assert main(["pretrain", *tiny_pretrain("--epochs", "1", "--eval-train-images", "100")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(weights) and "cache hit" in err
    # weights committed under the reference folder serve any --out-dir (a fresh clone trains nothing)
    monkeypatch.setattr(pipeline, "REFERENCE_DIR", tmp_path / "reference")
    shutil.copytree(weights.parent.parent.parent, tmp_path / "reference" / "pretrain")
    reference, status = pretrain(parse_pretrain_config(tiny_pretrain("--epochs", "1", out="elsewhere"))[0])
    assert status == "cached" and reference.is_relative_to(tmp_path / "reference")
    assert not (tmp_path / "elsewhere").exists()
    err = capsys.readouterr().err  # the stored evaluation is shown with the committed weights too
    assert "committed weights" in err and "| DINO pretrained |" in err and "| raw pixels |" in err
    # a changed file no longer matches its manifest: an error, never other weights
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(UserError, match="differs from its manifest"):
        build_model(run_cfg, [TaskSpec(name="t0")], image_size=28, in_chans=1)


def test_interrupted_pretraining_resumes_to_the_uninterrupted_weights(tiny_pretrain, monkeypatch, capsys):
    whole, _ = pretrain(parse_pretrain_config(tiny_pretrain("--epochs", "2", "--no-evaluate", out="a"))[0])
    save = artifact.save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(artifact, "save_checkpoint", save_then_stop)
    cfg, _ = parse_pretrain_config(tiny_pretrain("--epochs", "2", "--no-evaluate", out="b"))
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    monkeypatch.setattr(artifact, "save_checkpoint", save)
    capsys.readouterr()
    resumed, status = pretrain(cfg)
    err = capsys.readouterr().err
    assert "resuming after epoch 1/2" in err and "epoch 1/2:" not in err  # only epoch 2 trained again
    assert status == "done" and resumed.parent.name == whole.parent.name  # same recipe + data → same key
    assert artifact.sha256_file(resumed) == artifact.sha256_file(whole)


def test_float16_weights_are_the_float32_weights_rounded_and_load_strictly(tiny_pretrain, tiny, capsys):
    """--weights-dtype float16 stores the same weights in half the bytes, under its own key. Where the same recipe's
    float32 weights exist they are cast (nothing trained), and that file equals the one training again writes."""
    full, _ = pretrain(parse_pretrain_config(tiny_pretrain("--epochs", "1", "--no-evaluate"))[0])
    full_manifest = json.loads(full.with_name("vit_tiny.manifest.json").read_text())
    assert "weights_dtype" not in full_manifest["recipe"]  # float32 is the default: older weights keep their key
    capsys.readouterr()
    half, status = pretrain(parse_pretrain_config(tiny_pretrain("--epochs", "1", "--no-evaluate",
                                                                "--weights-dtype", "float16"))[0])
    assert status == "done" and "nothing trained" in capsys.readouterr().err and half.parent != full.parent
    manifest = json.loads(half.with_name("vit_tiny.manifest.json").read_text())
    assert manifest["recipe"]["weights_dtype"] == "float16" and manifest["weights_dtype"] == "float16"
    cast = manifest["cast_from"]
    assert (cast["key"], cast["weights_sha256"]) == (full_manifest["key"], full_manifest["weights_sha256"])
    assert {"versions", "git"} <= set(cast)  # the cast's own; the training's below
    assert all(manifest[k] == full_manifest[k] for k in ("epoch_losses", "train_wall_s", "device", "git", "versions"))
    stored, original = safetensors.torch.load_file(str(half)), safetensors.torch.load_file(str(full))
    assert {v.dtype for v in stored.values()} == {torch.float16}
    assert all(torch.equal(stored[k], v.half()) for k, v in original.items())
    assert half.stat().st_size < 0.6 * full.stat().st_size
    trained, _ = pretrain(parse_pretrain_config(tiny_pretrain("--epochs", "1", "--no-evaluate", "--weights-dtype",
                                                              "float16", out="trained"))[0])
    assert "cast_from" not in json.loads(trained.with_name("vit_tiny.manifest.json").read_text())
    assert artifact.sha256_file(trained) == manifest["weights_sha256"]  # casting = training, then storing
    run_cfg, _ = parse_config(tiny("--backbone-weights", str(half), "--backbone-mode", "frozen"))
    model, _ = build_model(run_cfg, [TaskSpec(name="t0")], image_size=28, in_chans=1)
    assert all(v.dtype == torch.float32 and torch.equal(v, stored[k].float())
               for k, v in model.backbone.state_dict().items())  # the run computes in fp32 on the stored values


def test_pretraining_on_a_full_or_read_only_disk_stops_before_training(tiny_pretrain, tmp_path, full_disk, capsys):
    """It trained an epoch first, then died in torch's file writer ("unexpected pos"), naming no path."""
    full_disk(tmp_path / "pt")
    assert main(["pretrain", *tiny_pretrain("--epochs", "1", "--no-evaluate")]) == 2
    err = capsys.readouterr().err
    assert "epoch 1/1" not in err and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"hatswap: error: cannot write results to {tmp_path / 'pt'}: No space "
                                            f"left on device; free space there or pass another --out-dir")
    assert not (tmp_path / "pt").exists()
    (tmp_path / "a-file").write_text("")  # root writes anywhere, but never below a regular file
    assert main(["pretrain", *tiny_pretrain("--epochs", "1", out="a-file/pt")]) == 2
    err = capsys.readouterr().err
    assert "epoch 1/1" not in err and f"cannot write results to {tmp_path / 'a-file' / 'pt'}: Not a directory" in err


def test_a_disk_that_fills_during_pretraining_names_the_checkpoint_and_leaves_no_file(tiny_pretrain, tmp_path,
                                                                                     full_disk, monkeypatch, capsys):
    real_train = pipeline.train

    def fill_then_train(*args, **kwargs):  # the disk fills once the checks are behind
        full_disk(tmp_path / "pt")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train", fill_then_train)
    assert main(["pretrain", *tiny_pretrain("--epochs", "1", "--no-evaluate")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"hatswap: error: cannot write {tmp_path / 'pt' / 'pretrain'}")
    assert line.endswith("checkpoint.pt: No space left on device; free space there or pass another --out-dir")
    assert list((tmp_path / "pt").iterdir()) == []  # no temporary checkpoint, no empty folders


def test_pretrain_input_errors_are_one_line(tiny_pretrain, capsys):
    assert main(["pretrain", *tiny_pretrain("--backbone", "dino_vits16")]) == 2
    assert main(["pretrain", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "vit_tiny" in err[0] and "no \"pretrain\" section" in err[1]


def test_a_profile_with_a_pretrain_section_pretrains_then_runs_on_those_weights(tmp_path, fmnist_root, monkeypatch):
    import benchmark.config

    smoke = json.loads((benchmark.config.PROFILE_DIR / "smoke.json").read_text())
    profile = smoke | {"strategies": ["naive"], "pretrain": {
        "epochs": 1, "batch_size": 64, "out_dim": 32, "head_hidden": 16, "head_bottleneck": 8, "local_crops": 2,
        "evaluate": False, "vit_tiny.embed_dim": 16, "vit_tiny.depth": 1, "vit_tiny.num_heads": 2}}
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tiny-dino.json").write_text(json.dumps(profile))
    monkeypatch.setattr(benchmark.config, "PROFILE_DIR", tmp_path / "profiles")
    out = tmp_path / "out"
    assert main(["batch", "--profile", "tiny-dino", "--data-root", str(fmnist_root), "--out-dir", str(out),
                 "--no-download", "--no-apt-install", "--backbone-mode", "frozen"]) == 0
    weights = next((out / "pretrain").rglob("vit_tiny.safetensors"))
    record = json.loads((out / "runs" / "binary_tasks" / "naive" / "seed0" / "config.json").read_text())
    assert record["backbone"]["weights_sha256"] == artifact.sha256_file(weights)
    assert record["backbone"]["mode"] == "frozen" and record["backbone"]["pretraining"]["epochs"] == 1


def test_the_dino_offline_profile_parses_for_pretraining_and_for_its_runs():
    pre, _ = parse_pretrain_config(["--profile", "dino-offline"])
    run_cfg, _ = parse_config(["--profile", "dino-offline"])
    assert pre.source == run_cfg.stream_args.source == "fashion_mnist" and pre.backbone == run_cfg.backbone
    assert pre.backbone_args == run_cfg.backbone_args and run_cfg.backbone_mode == "frozen"


def test_a_profile_may_name_another_profiles_pretraining(tmp_path, monkeypatch):
    """"pretrain": "dino-offline" is that profile's section: the same recipe, so the same committed weights."""
    import benchmark.config

    folder = tmp_path / "profiles"
    folder.mkdir()
    shutil.copy(benchmark.config.PROFILE_DIR / "dino-offline.json", folder)
    (folder / "borrows.json").write_text(json.dumps({"streams": ["binary_tasks"], "strategies": ["naive"],
                                                     "seeds": [0], "pretrain": "dino-offline", "config": {}}))
    (folder / "names-nothing.json").write_text(json.dumps({"pretrain": "borrows"}))
    monkeypatch.setattr(benchmark.config, "PROFILE_DIR", folder)
    borrowed = parse_pretrain_config(["--profile", "borrows"])[0]
    assert borrowed.recipe() == parse_pretrain_config(["--profile", "dino-offline"])[0].recipe()
    with pytest.raises(UserError, match="no \"pretrain\" section"):
        parse_pretrain_config(["--profile", "names-nothing"])  # one level: a name must lead to a section


def test_committed_reference_weights_match_their_manifest_and_the_profile():
    """results/reference/pretrain/ ships the dino-offline recipe's weights: intact, and under the profile's key."""
    from benchmark.models.vit_tiny import create_vit_tiny

    manifests = sorted(pipeline.REFERENCE_DIR.glob("pretrain/*/*/vit_tiny.manifest.json"))
    assert manifests, "no committed pretraining under results/reference/pretrain/"
    profile_recipe = parse_pretrain_config(["--profile", "dino-offline"])[0].recipe()
    assert any(json.loads(m.read_text())["recipe"] == profile_recipe for m in manifests)
    for path in manifests:
        manifest = json.loads(path.read_text())
        weights = path.with_name(manifest["weights_file"])
        assert artifact.sha256_file(weights) == manifest["weights_sha256"]
        assert manifest["key"] == artifact.pretrain_key(manifest["recipe"], manifest["data_sha256"])
        assert path.parent.name == f"vit_tiny-{manifest['key'][:16]}"
        cfg, _ = parse_pretrain_config([f"--{k}={v}" for k, v in manifest["recipe"].items()
                                        if k.startswith("vit_tiny.")])
        create_vit_tiny(cfg.backbone_args, manifest["architecture"]["image_size"],
                        manifest["architecture"]["in_chans"], weights)  # loads through timm, strictly


@pytest.mark.parametrize("manifest, expected", [
    ("[]", "holds a JSON list, not the object"),
    ('"vit_tiny"', "holds a JSON str, not the object"),
    ("{}", "has no weights_sha256, so it cannot vouch for vit_tiny.safetensors"),
    ('{"weights_sha256": "0000"}', "differs from its manifest"),
    ('{"weights_sha256": "SHA"}', "has no architecture object"),
])
def test_a_broken_weights_manifest_is_its_own_error_line(manifest, expected, tiny, tmp_path, capsys):
    """A manifest beside the weights that is not what `hatswap pretrain` writes: one line saying what is wrong with
    it (a list was an AttributeError; one without weights_sha256 read as "the file was changed")."""
    from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny

    weights = tmp_path / "vit_tiny.safetensors"
    artifact.save_weights(create_vit_tiny(VitTinyConfig(embed_dim=16, depth=1, num_heads=2), 28, 1).state_dict(),
                          weights)
    weights.with_name("vit_tiny.manifest.json").write_text(manifest.replace("SHA", artifact.sha256_file(weights)))
    if "SHA" not in manifest:  # and never a pretraining cache hit (a list was an AttributeError there too)
        assert artifact.cached_manifest(weights) is None
    out_dir = tmp_path / "out"
    assert main(["run", *tiny("--strategy", "naive", "--backbone-weights", str(weights), "--out-dir",
                              str(out_dir))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]
    assert not (out_dir / "runs").exists()
