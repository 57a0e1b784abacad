"""Pretrained backbones: weights from a file / the Hugging Face cache, loaded strictly (every registered backbone
that takes a weights file: a matching file loads every tensor, a mismatched one is one error line naming its keys),
the input pipeline from timm's data config, and the last-k backbone mode."""

import hashlib
import json

import pytest
import safetensors.torch
import timm
import torch

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.run import run
from benchmark.models import build_model
from benchmark.models.backbone_training import build_optimizer
from benchmark.models.dino import BackboneInput, DinoConfig
from benchmark.models.efficientnet_b0_fpn import EfficientNetFPNConfig
from benchmark.models.vit_tiny import VitTinyConfig, create_vit_tiny, vit_tiny
from benchmark.registry import BACKBONES
from benchmark.tasks import TaskSpec

TINY = {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}  # a vit_small_patch16_224 of test size
HUB_ID = "timm/vit_small_patch16_224.dino"


def tiny_flags(**sizes) -> list[str]:
    return ["--backbone", "dino_vits16", *[a for k, v in (TINY | sizes).items()
                                            for a in (f"--dino_vits16.{k.replace('_', '-')}", str(v))]]


def save_tiny_vit(path, seed=0, **sizes):
    torch.manual_seed(seed)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **(TINY | sizes))
    sd = vit.state_dict()
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return sd


@pytest.fixture
def offline_empty_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    return tmp_path / "hf_home" / "hub"


TASKS = [TaskSpec(name=f"t{i}") for i in range(3)]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_is_loaded_by_timm_and_its_sha256_recorded(suffix, tiny, tmp_path, offline_empty_hf):
    path = tmp_path / f"dino_tiny{suffix}"
    saved = save_tiny_vit(path, seed=3)
    cfg, _ = parse_config(tiny(*tiny_flags(), "--backbone-weights", str(path), "--backbone-mode", "frozen"))
    model, ident = build_model(cfg, TASKS, image_size=28, in_chans=1)
    loaded = model.backbone.vit.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    folder, _ = run(cfg)
    rec = json.loads((folder / "config.json").read_text())
    assert rec["backbone"]["weights_sha256"] == digest and rec["backbone"]["weights_source"] == "file"
    assert digest in json.loads((folder / "summary.json").read_text())["backbone_weights"]


def test_wrong_architecture_file_is_one_user_error(tiny, tmp_path, capsys):
    path = tmp_path / "wide.pth"
    save_tiny_vit(path, embed_dim=48)
    cfg, _ = parse_config(tiny(*tiny_flags(), "--backbone-weights", str(path)))
    with pytest.raises(UserError, match="does not hold vit_small_patch16_224.dino weights.*tensors of another shape"):
        build_model(cfg, TASKS, image_size=28, in_chans=1)
    out_dir = tmp_path / "out"
    assert main(["run", *tiny(*tiny_flags(), "--backbone-weights", str(path), "--out-dir", str(out_dir))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0]
    assert not (out_dir / "runs").exists()


def test_no_weights_offline_names_hub_id_and_both_fixes(tiny, tmp_path, offline_empty_hf, capsys):
    cfg, _ = parse_config(tiny(*tiny_flags()))
    with pytest.raises(UserError) as e:
        build_model(cfg, TASKS, image_size=28, in_chans=1)
    msg = str(e.value)
    assert "\n" not in msg and HUB_ID in msg and "--backbone-weights" in msg
    assert f"huggingface-cli download {HUB_ID}" in msg and str(offline_empty_hf) in msg
    # a batch (the paper profile) stops before its first run, having written nothing
    out_dir = tmp_path / "paper_out"
    assert main(["batch", "--profile", "paper", "--out-dir", str(out_dir), "--no-download"]) == 2
    assert HUB_ID in capsys.readouterr().err and not out_dir.exists()


def test_weights_found_in_hf_cache_offline_record_hub_id_and_revision(tiny, tmp_path, offline_empty_hf):
    repo = offline_empty_hf / "models--timm--vit_small_patch16_224.dino"  # huggingface_hub's on-disk layout
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    saved = save_tiny_vit(snap / "model.safetensors", seed=5)
    cfg, _ = parse_config(tiny(*tiny_flags()))
    model, ident = build_model(cfg, TASKS, image_size=28, in_chans=1)
    assert ident["weights"].startswith(f"hf-hub {HUB_ID}@0123abcd") and ident["weights_source"] == "hf-cache"
    assert torch.equal(model.backbone.vit.pos_embed, saved["pos_embed"])


def test_input_pipeline_comes_from_timm_data_config():
    vit = timm.create_model("vit_small_patch16_224.dino", pretrained=False, num_classes=0, **TINY)
    dc = timm.data.resolve_model_data_config(vit) | {"input_size": (3, 40, 40)}
    adapter = BackboneInput(dc)
    p = 0.25  # a flat grey image of brightness p, as the stream yields it: (p - 0.5) / 0.5
    out = adapter(torch.full((2, 1, 28, 28), (p - 0.5) / 0.5))
    assert out.shape == (2, 3, 40, 40)
    expected = (p - torch.tensor(dc["mean"])) / torch.tensor(dc["std"])
    assert torch.allclose(out.mean((0, 2, 3)), expected, atol=1e-4) and dc["mean"] != (0.5, 0.5, 0.5)


def test_last_k_trains_only_the_last_blocks_with_their_own_lr(tiny):
    cfg, _ = parse_config(tiny("--backbone-mode", "last-k", "--last-k", "1", "--vit_tiny.depth", "3",
                               "--backbone-lr", "1e-5", "--lr", "1e-3"))
    model, ident = build_model(cfg, TASKS, image_size=28, in_chans=1)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.2.", "norm.")) for n in trainable)
    assert any(n.startswith("blocks.2.") for n in trainable) and ident["mode"] == "last-1"
    opt = build_optimizer(model, cfg.lr, cfg.backbone_lr, cfg.weight_decay)
    assert [g["lr"] for g in opt.param_groups] == [1e-5, 1e-3]
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.backbone.parameters()
                                                              if p.requires_grad}
    with pytest.raises(UserError, match="--last-k 4.*3 blocks"):
        build_model(parse_config(tiny("--backbone-mode", "last-k", "--last-k", "4", "--vit_tiny.depth", "3"))[0],
                    TASKS, image_size=28, in_chans=1)


def test_dino_entries_are_registered_with_their_hub_ids():
    assert {"dino_vits16", "dino_vitb16", "dinov2_vits14"} <= set(BACKBONES.names())
    assert BACKBONES.get("dinov2_vits14").meta.hub_id == "timm/vit_small_patch14_dinov2.lvd142m"


# --- strict loading, over every registered backbone that takes a weights file ----------------------------------

WEIGHTED_BACKBONES = [n for n in BACKBONES.names()
                      if BACKBONES.get(n).meta.hub_id or BACKBONES.get(n).meta.weights_file]
TINY_DINO = DinoConfig(img_size=32, embed_dim=32, depth=1, num_heads=2)


def tiny_backbone(name: str):
    """→ (config of a test-sized `name`, image size, channels, a freshly built state dict of that architecture as a
    checkpoint holds it: efficientnet_b0's with its classifier and head conv, as timm's ImageNet file)."""
    if name == "vit_tiny":
        cfg = VitTinyConfig(embed_dim=16, depth=1, num_heads=2)
        return cfg, 28, 1, create_vit_tiny(cfg, 28, 1).state_dict()
    if name == "efficientnet_b0_fpn":
        return EfficientNetFPNConfig(), 32, 1, timm.create_model("efficientnet_b0", pretrained=False).state_dict()
    timm_name = BACKBONES.get(name).meta.timm_name  # a dino_* entry: test-sized, as the ones a user may pass
    sizes = {k: v for k, v in vars(TINY_DINO).items() if v}
    return TINY_DINO, 32, 3, timm.create_model(timm_name, pretrained=False, num_classes=0, **sizes).state_dict()


def save_state(state: dict, path):
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def build_backbone(name: str, cfg, size: int, chans: int, path):
    return BACKBONES.get(name).build(cfg, image_size=size, in_chans=chans, weights=str(path))


def loaded_part(module):
    """The timm model inside a registry module (PretrainedViT.vit, EfficientNetFPN.body), whose keys a file holds."""
    return getattr(module, "vit", None) or getattr(module, "body", None) or module


def test_every_backbone_that_takes_a_weights_file_has_a_case_here():
    assert set(WEIGHTED_BACKBONES) >= {"vit_tiny", "dino_vits16", "dinov2_vitb14", "efficientnet_b0_fpn"}
    for name in WEIGHTED_BACKBONES:
        tiny_backbone(name)  # a new kind of backbone needs its test-sized case above


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", WEIGHTED_BACKBONES)
def test_a_matching_file_loads_every_tensor_and_records_what_it_left_out(name, suffix, tmp_path, offline_empty_hf):
    cfg, size, chans, state = tiny_backbone(name)
    path = save_state(state, tmp_path / f"{name}{suffix}")
    built = build_backbone(name, cfg, size, chans, path)
    loaded, identity = loaded_part(built.module).state_dict(), built.identity
    assert loaded.keys() <= state.keys() and all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert identity["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # what the file held beyond the backbone is named in the record (efficientnet's classifier and head conv)
    assert sorted(identity.get("weights_unused_keys", [])) == sorted(state.keys() - loaded.keys())


def corrupt(state: dict, model_keys: list[str], how: str) -> tuple[dict, str]:
    """→ (the checkpoint spoilt as `how` says, a key the error line must name)."""
    victim = [k for k in model_keys if k != "pos_embed" and not k.endswith("num_batches_tracked")][-1]
    if how == "other architecture":  # a resnet18 checkpoint's first tensors
        return {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64), "fc.weight": torch.zeros(
            1000, 512)}, "conv1.weight"
    if how == "backbone. prefix":
        return {f"backbone.{k}": v for k, v in state.items()}, "backbone."
    if how == "missing key":
        return {k: v for k, v in state.items() if k != victim}, victim
    if how == "extra key":
        return state | {"extra.weight": torch.zeros(2)}, "extra.weight"
    if how == "wrong shape":
        return state | {victim: torch.cat([state[victim], state[victim][:1]])}, victim
    raise ValueError(how)


CORRUPTIONS = ["other architecture", "backbone. prefix", "missing key", "extra key", "wrong shape"]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("name", WEIGHTED_BACKBONES)
def test_a_mismatched_file_is_one_error_line_naming_the_file_and_its_keys(name, how, tmp_path, offline_empty_hf):
    cfg, size, chans, state = tiny_backbone(name)
    path = tmp_path / f"{name}.pth"
    model_keys = list(loaded_part(build_backbone(name, cfg, size, chans, save_state(state, path)).module).state_dict())
    spoilt, named = corrupt(state, model_keys, how)
    save_state(spoilt, path)
    with pytest.raises(UserError) as e:
        build_backbone(name, cfg, size, chans, path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path} does not hold ") and named in msg
    if how in ("other architecture", "backbone. prefix"):
        assert "of the backbone missing" in msg and "unexpected" in msg


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_prefixed_or_wrapped_checkpoint_is_refused_with_the_command_that_converts_it(suffix, tmp_path):
    """DINO's own checkpoints wrap `{"teacher": …, "student": …}`, whose keys carry `backbone.` (and the DINO head's
    `head.*`): nothing is guessed; each error line names a command, and following them gives a file that loads."""
    cfg, size, chans, state = tiny_backbone("vit_tiny")
    teacher = {f"backbone.{k}": v for k, v in state.items()} | {"head.last_layer.weight": torch.zeros(4, 16)}
    path = tmp_path / f"dino_checkpoint{suffix}"
    if suffix == ".pth":
        torch.save({"student": {k: v + 1 for k, v in teacher.items()}, "teacher": teacher}, path)
    else:  # safetensors holds only tensors: the prefix alone
        safetensors.torch.save_file(teacher, str(path))
    commands = []
    for _ in range(3):
        try:
            built = vit_tiny(cfg, image_size=size, in_chans=chans, weights=str(path))
            break
        except UserError as e:
            commands.append(str(e).split('python -c "', 1)[1].rstrip('"'))
            exec(commands[-1], {})
            path = tmp_path / f"{path.stem}-converted{suffix}"
    assert len(commands) == (2 if suffix == ".pth" else 1)
    assert all(torch.equal(v, state[k]) for k, v in built.module.state_dict().items())
    assert built.identity["weights_file"] == str(path.resolve())  # the converted file is what the run records


def test_an_unreadable_or_non_tensor_file_is_one_error_line(tmp_path):
    cfg, size, chans, state = tiny_backbone("vit_tiny")
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="torch.load.weights_only=True. cannot read it as a state dict"):
        vit_tiny(cfg, image_size=size, in_chans=chans, weights=str(path))
    torch.save(state | {"epoch": 3}, path)
    with pytest.raises(UserError, match=r"1 of its entries are not tensors \(epoch\); write the tensors alone"):
        vit_tiny(cfg, image_size=size, in_chans=chans, weights=str(path))
    torch.save([state], path)
    with pytest.raises(UserError, match="it holds a list, not a state dict"):
        vit_tiny(cfg, image_size=size, in_chans=chans, weights=str(path))


def test_dinov2_checkpoints_in_metas_layout_load_through_timms_conversion(tmp_path):
    """Meta's dinov2_vits14_pretrain.pth holds a `mask_token` and position embeddings for 518 px; timm's
    checkpoint_filter_fn drops the one and resamples the other to the run's patch grid: loaded, not refused."""
    sizes = {k: v for k, v in vars(TINY_DINO).items() if v and k != "img_size"}
    meta = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=56,
                             **sizes).state_dict() | {"mask_token": torch.zeros(1, 32)}
    path = save_state(meta, tmp_path / "dinov2_vits14_pretrain.pth")
    vit = BACKBONES.get("dinov2_vits14").build(TINY_DINO, image_size=32, in_chans=3, weights=str(path)).module.vit
    assert meta["pos_embed"].shape[1] == 1 + 16 and vit.pos_embed.shape[1] == 1 + 4  # 4×4 patches → 2×2
    assert torch.equal(vit.blocks[0].attn.qkv.weight, meta["blocks.0.attn.qkv.weight"])


def test_vit_tiny_weights_of_another_architecture_fail_the_run_and_write_nothing(tiny, tmp_path, capsys):
    """The reviewer's case: a resnet18 file, or a vit_tiny file with a `backbone.` prefix, and no manifest, ran at
    random init with exit 0 while config.json named the file."""
    cfg, size, chans, state = tiny_backbone("vit_tiny")
    resnet = save_state({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)},
                        tmp_path / "resnet18.pth")
    prefixed = save_state({f"backbone.{k}": v for k, v in state.items()}, tmp_path / "vit_tiny_prefixed.pth")
    for path in (resnet, prefixed):
        out_dir = tmp_path / f"out-{path.stem}"
        assert main(["run", *tiny("--strategy", "naive", "--backbone-weights", str(path), "--out-dir",
                                  str(out_dir))]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "missing" in err[0] and "Traceback" not in err[0]
        assert not (out_dir / "runs").exists()
    good = save_state(state, tmp_path / "vit_tiny.pth")
    out_dir = tmp_path / "out-good"
    assert main(["run", *tiny("--strategy", "naive", "--backbone-weights", str(good), "--out-dir",
                              str(out_dir))]) == 0
    record = json.loads(next((out_dir / "runs").rglob("config.json")).read_text())
    assert record["backbone"]["weights_sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
