"""The `ptm` profile and its from-scratch arm `ptm-scratch`: every method for a pretrained backbone is in ptm, each
runs in the backbone mode it needs, on the committed DINO weights, and the two profiles' runs are paired (the same
streams, data, scenario, seeds and budget; only the backbone differs)."""

import json

import pytest

from benchmark.config import load_profile, parse_config
from benchmark.pretrain.config import parse_pretrain_config
from benchmark.registry import STRATEGIES

PTM, SCRATCH = load_profile("ptm"), load_profile("ptm-scratch")
SAME = ("stream_args", "scenario", "epochs", "batch_size", "lr", "optimizer", "backbone", "backbone_args")


def test_ptm_holds_every_method_for_a_pretrained_backbone_and_the_from_scratch_baselines():
    ptm_methods = {n for n in STRATEGIES.names() if STRATEGIES.get(n).meta.ptm}
    assert ptm_methods <= set(PTM["strategies"])
    assert {"naive", "lwf", "replay", "der"} <= set(PTM["strategies"]) & set(SCRATCH["strategies"])
    assert PTM["seeds"] == SCRATCH["seeds"] and PTM["streams"] == SCRATCH["streams"]


@pytest.mark.parametrize("strategy", PTM["strategies"])
@pytest.mark.parametrize("stream", PTM["streams"])
def test_each_ptm_run_is_paired_with_its_from_scratch_counterpart(strategy, stream):
    cfg, _ = parse_config(["--profile", "ptm", "--strategy", strategy, "--stream", stream])
    scratch, _ = parse_config(["--profile", "ptm-scratch", "--strategy", "naive", "--stream", stream])
    assert cfg.backbone_mode in STRATEGIES.get(strategy).meta.backbone_modes
    assert cfg.backbone_mode == ("finetune" if strategy == "slca" else "frozen") and scratch.backbone_mode == "finetune"
    assert {f: getattr(cfg, f) for f in SAME} == {f: getattr(scratch, f) for f in SAME}
    assert cfg.scenario == "class-il" and cfg.hidden == ()


def test_ptm_pretrains_nothing_on_a_fresh_clone():
    """Its "pretrain" section is a recipe whose weights are committed (sha256 checked), of its runs' ViT size."""
    from benchmark.pretrain import artifact, pipeline

    pre = parse_pretrain_config(["--profile", "ptm"])[0]
    run_cfg, _ = parse_config(["--profile", "ptm", "--strategy", "naive", "--stream", "binary_tasks"])
    manifests = [json.loads(p.read_text()) for p in pipeline.REFERENCE_DIR.glob("pretrain/*/*/vit_tiny.manifest.json")]
    committed = [m for m in manifests if m["recipe"] == pre.recipe()]
    assert len(committed) == 1 and pre.backbone_args == run_cfg.backbone_args
    folder = artifact.pretrain_folder(pipeline.REFERENCE_DIR, pre.source, pre.backbone, committed[0]["key"])
    assert artifact.cached_manifest(artifact.weights_file(folder, pre.backbone)) is not None


@pytest.mark.parametrize("strategy", sorted(n for n in STRATEGIES.names() if STRATEGIES.get(n).meta.ptm))
def test_each_method_for_a_pretrained_backbone_parses_under_the_smoke_profile(strategy):
    """`hatswap run --profile smoke --strategy NAME` works for every one (the issue's acceptance): the smoke profile
    freezes the backbone for those that need it."""
    cfg, _ = parse_config(["--profile", "smoke", "--strategy", strategy])
    assert cfg.backbone_mode in STRATEGIES.get(strategy).meta.backbone_modes
