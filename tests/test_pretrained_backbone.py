"""DINO backbones: weights from a file / the Hugging Face cache through timm's own loader, the one-line errors,
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
from benchmark.models import build_model
from benchmark.models.backbone_training import build_optimizer
from benchmark.models.dino import BackboneInput
from benchmark.registry import BACKBONES
from benchmark.run import run
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
    with pytest.raises(UserError, match="does not hold vit_small_patch16_224.dino weights.*size mismatch"):
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
