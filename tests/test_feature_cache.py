"""Frozen-feature cache: same results as running the frozen backbone every step, for every strategy; corrupt or
partial entries are rebuilt; hit/miss is reported."""

import json

import numpy as np
import pytest

from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.outputs.results import read_matrix
from benchmark.registry import STRATEGIES

# Default-width vit_tiny, frozen, and a learning rate high enough that R moves off the trivial 0.667.
FROZEN = ("--backbone-mode", "frozen", "--vit_tiny.embed-dim", "32", "--vit_tiny.depth", "2", "--hidden", "32",
          "--lr", "0.02", "--epochs", "4")


def _run(tiny, tmp_path, name, *extra):
    cfg, _ = parse_config(tiny(*FROZEN, "--out-dir", str(tmp_path / name), "--cache-dir", str(tmp_path / "cache"),
                               *extra))
    folder, _ = run(cfg)
    summary = json.loads((folder / "summary.json").read_text())
    return np.array(read_matrix(folder / "matrix.csv")[2]), summary, json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_gives_the_same_R_on_cached_features(strategy, tiny, tmp_path):
    R_plain, s_plain, rec_plain = _run(tiny, tmp_path, "plain", "--strategy", strategy, "--no-feature-cache")
    R_cold, s_cold, rec_cold = _run(tiny, tmp_path, "cold", "--strategy", strategy)
    if STRATEGIES.get(strategy).meta.prompts_backbone:  # prompts need images: the cache is never used
        assert "feature_cache" not in rec_cold["backbone"] and not (tmp_path / "cache" / "features").exists()
        np.testing.assert_array_equal(R_cold, R_plain)
        return
    R_warm, s_warm, rec_warm = _run(tiny, tmp_path, "warm", "--strategy", strategy)
    assert "feature_cache" not in rec_plain["backbone"]
    assert {s["status"] for s in rec_cold["backbone"]["feature_cache"].values()} == {"miss"}
    assert {s["status"] for s in rec_warm["backbone"]["feature_cache"].values()} == {"hit"}
    np.testing.assert_allclose(R_cold, R_plain, atol=1e-6)
    np.testing.assert_allclose(R_warm, R_plain, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(s_warm["epoch_train_loss"]),
                               np.concatenate(s_plain["epoch_train_loss"]), rtol=1e-4)
    if strategy == "naive":  # the comparison is about something: training moved R off its trivial value
        assert np.unique(R_plain).size > 1
    # the budget counts and times the deployed network, backbone included, cached or not (progressive's columns
    # hold one frozen backbone copy each when run uncached, one shared backbone when cached; a training-free
    # strategy's network is the backbone and its own classifier, not the model's shared layers and heads)
    if strategy != "progressive":
        assert s_cold["budget"]["params"] == s_plain["budget"]["params"]
    if strategy != "progressive" and not STRATEGIES.get(strategy).meta.training_free:
        assert s_cold["budget"]["params"] == rec_plain["backbone"]["params"]
    assert s_cold["budget"]["latency_ms_per_image"] > 0


def test_corrupt_or_partial_entry_is_detected_and_rebuilt(tiny, tmp_path, capsys):
    R0, _, rec = _run(tiny, tmp_path, "a")
    assert "feature cache miss (absent) train" in capsys.readouterr().err
    train = rec["backbone"]["feature_cache"]["train"]
    feats = tmp_path / "cache" / "features" / "vit_tiny" / train["path"].rsplit("/", 1)[-1] / "features.npy"
    assert feats.is_file() and np.load(feats, mmap_mode="r").shape == tuple(train["shape"])

    raw = bytearray(feats.read_bytes())
    raw[-5] ^= 0xFF  # one flipped byte in the last feature row
    feats.write_bytes(bytes(raw))
    R1, _, rec1 = _run(tiny, tmp_path, "b")
    err = capsys.readouterr().err
    assert "feature cache miss (corrupt (checksum differs)) train" in err and "feature cache hit test" in err
    assert rec1["backbone"]["feature_cache"]["train"]["status"] == "miss"

    (feats.parent / "manifest.json").unlink()  # as if a run died between the array and the manifest
    R2, _, _ = _run(tiny, tmp_path, "c")
    assert "feature cache miss (partial (no manifest)) train" in capsys.readouterr().err

    _, _, rec3 = _run(tiny, tmp_path, "d")
    assert "feature cache hit train" in capsys.readouterr().err
    assert rec3["backbone"]["feature_cache"]["train"]["key"] == train["key"]
    np.testing.assert_array_equal(R1, R0)
    np.testing.assert_array_equal(R2, R0)
    assert not list(feats.parent.glob(".*tmp*"))  # no temporary files left behind


def test_cache_key_changes_with_the_data_subset(tiny, tmp_path):
    _, _, a = _run(tiny, tmp_path, "a")
    _, _, b = _run(tiny, tmp_path, "b", "--seed", "1")  # another seed draws another stratified subsample
    assert a["backbone"]["feature_cache"]["train"]["key"] != b["backbone"]["feature_cache"]["train"]["key"]


def test_backbone_latency_is_measured_once_per_machine_and_reused(tiny, tmp_path, monkeypatch):
    from benchmark.harness import feature_cache
    from benchmark.runtime import device

    measured = []
    real = device.latency_ms_per_image

    def counting(model, samples, dev, **kw):  # the backbone's probe is the one whose model is _BackboneOnly
        if isinstance(model, feature_cache._BackboneOnly):
            measured.append(len(samples))
        return real(model, samples, dev, **kw)

    monkeypatch.setattr(device, "latency_ms_per_image", counting)
    monkeypatch.setattr(feature_cache, "_BACKBONE_MS", {})
    _, first, _ = _run(tiny, tmp_path, "a", "--strategy", "naive")
    _, second, _ = _run(tiny, tmp_path, "b", "--strategy", "lwf")
    assert measured == [1]  # once, for the first run; the second reused it from this process
    parts = [s["budget"]["latency_parts"] for s in (first, second)]
    assert parts[0]["backbone_ms_source"] == "measured" and parts[1]["backbone_ms_source"].startswith("reused")
    assert parts[0]["backbone_ms"] == parts[1]["backbone_ms"] > 0
    for s in (first, second):  # every task's latency = the backbone's + the shared layers' and head's (> 0)
        assert all(v > s["budget"]["latency_parts"]["backbone_ms"] for v in s["budget"]["latency_ms_per_task"].values())
    monkeypatch.setattr(feature_cache, "_BACKBONE_MS", {})  # a new process: reads it from the cache folder
    _, third, _ = _run(tiny, tmp_path, "c", "--strategy", "replay")
    assert measured == [1] and str(tmp_path / "cache" / "latency") in third["budget"]["latency_parts"][
        "backbone_ms_source"]


@pytest.mark.parametrize("strategy", [n for n in STRATEGIES.names() if not STRATEGIES.get(n).meta.prompts_backbone])
def test_fast_cached_batches_are_bit_identical_to_avalanches_fetching(strategy, tiny, tmp_path, monkeypatch):
    from benchmark.harness import fast_batches

    gathered = []
    batch = fast_batches._Gathered.batch
    monkeypatch.setattr(fast_batches._Gathered, "batch",
                        lambda self, idx: gathered.append(len(idx)) or batch(self, idx))
    monkeypatch.setenv("HATSWAP_SLOW_BATCHES", "1")
    R_slow, s_slow, _ = _run(tiny, tmp_path, "slow", "--strategy", strategy)
    assert not gathered
    monkeypatch.delenv("HATSWAP_SLOW_BATCHES")
    R_fast, s_fast, _ = _run(tiny, tmp_path, "fast", "--strategy", strategy)
    # the fixture's 3 tasks × 90 images × 4 epochs (replay adds its memory to that; a training-free strategy makes
    # one pass)
    n_train = 3 * 90 * (1 if STRATEGIES.get(strategy).meta.training_free else 4)
    assert sum(gathered) >= n_train  # the fast path built the batches (validation probes add a few)
    assert np.array_equal(R_fast, R_slow) and np.unique(R_slow).size > 1
    assert s_fast["epoch_train_loss"] == s_slow["epoch_train_loss"]  # every epoch's loss, to the last bit
    assert s_fast["eval_loss"] == s_slow["eval_loss"]


def test_trivial_references_of_a_cached_baseline_are_on_pixels(tiny, tmp_path):
    _, cached, _ = _run(tiny, tmp_path, "cached", "--strategy", "single_task")
    _, plain, _ = _run(tiny, tmp_path, "plain", "--strategy", "single_task", "--no-feature-cache")
    assert cached["references"] == plain["references"] and cached["references"]
