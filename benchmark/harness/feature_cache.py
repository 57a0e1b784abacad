"""Frozen-backbone feature cache: run the backbone once per dataset, train shared layers + heads on its output.

A frozen backbone is in eval mode (no dropout, fixed norms), so its output is a fixed function f(x) of the image;
training on cached f(x) with an identity backbone gives the same model as running f every step, at the cost of
one pass over the data. One entry per (backbone, its weights, data files, split, subset indices, transform):

    <cache_dir>/features/<backbone>/<split>-<key[:24]>/
        features.npy     N × D float32 (N = all tasks' samples of the split, in stream order), np.load(mmap_mode="r")
        manifest.json    written last: key material, shape, dtype, sha256 of features.npy, per-task row counts

An entry without a manifest (interrupted) or whose manifest disagrees with the array (shape, checksum) is a miss
and is rebuilt; every file is written to a temporary name and renamed into place (os.replace), so readers never
see half an array. An entry is checked and built under an exclusive lock (`.<entry>.lock`, fcntl), so runs in
parallel (Ray tasks, several batches) on the same key extract once: the others wait and find it. Key and hit/miss
go to stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from benchmark.errors import UserError
from benchmark.models.pretrained_weights import sha256_file
from benchmark.outputs.results import write_error
from benchmark.registry import STRATEGIES
from benchmark.streams.task_stream import Benchmark

FORMAT_VERSION = 1
EXTRACT_BATCH = 128


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "hatswap"


class CachedFeatures(Dataset):
    """(feature row as a tensor of shape D, label) from a read-only memory-mapped N × D array (float32; float64 for
    a --dtype float64 run)."""

    def __init__(self, feats: np.ndarray, targets: list[int]):
        self.feats, self.targets = feats, torch.as_tensor(targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self.feats[i])), self.targets[i]  # np.array: a writable copy of one row


def state_dict_sha256(module: nn.Module) -> str:
    """The weights actually loaded (also right for random init, whose identity is only a seed)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read_entry(folder: Path, key: str) -> tuple[np.ndarray | None, dict | None, str]:
    """→ (memory-mapped features, manifest, '') on a valid entry, else (None, None, why it is a miss)."""
    manifest_path, feats_path = folder / "manifest.json", folder / "features.npy"
    if not manifest_path.is_file():
        return None, None, "absent" if not folder.exists() else "partial (no manifest)"
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            return None, None, f"corrupt (manifest holds a {type(manifest).__name__}, not an object)"
        if manifest.get("key") != key:
            return None, None, "stale (key differs)"
        if sha256_file(feats_path) != manifest["sha256"]:
            return None, None, "corrupt (checksum differs)"
        feats = np.load(feats_path, mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        return None, None, f"corrupt ({type(e).__name__})"
    if list(feats.shape) != manifest.get("shape") or str(feats.dtype) != manifest.get("dtype"):
        return None, None, "corrupt (shape differs)"
    return feats, manifest, ""


@torch.no_grad()
def extract(backbone: nn.Module, datasets: list, device: torch.device, desc: str, autocast_dtype=None) -> np.ndarray:
    """Backbone output for every sample of every dataset (in order) → N × D, in the compute dtype (float32, or
    float64 under --dtype float64: the cache key names it). Batches of EXTRACT_BATCH."""
    backbone.eval().to(device)  # the strategy moves the model later; extraction comes first
    amp = torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None)
    total = sum(len(ds) for ds in datasets)
    bar = tqdm(total=total, desc=desc, unit="img", unit_scale=True, file=sys.stderr, dynamic_ncols=True,
               disable=not sys.stderr.isatty())  # a log file gets the hit/miss lines, not 100 bar redraws
    out, cuda, dtype = [], device.type == "cuda", torch.get_default_dtype()
    for ds in datasets:
        # Own generator: an iterator draws a seed from the global RNG, which would make a cold-cache run train
        # differently from a warm one.
        loader = DataLoader(ds, batch_size=EXTRACT_BATCH, shuffle=False, num_workers=0, pin_memory=cuda,
                            generator=torch.Generator())
        for batch in loader:
            x = batch[0].to(device, non_blocking=cuda)
            with amp:
                out.append(backbone(x.to(dtype)).to(dtype).cpu())
            bar.update(len(x))
    bar.close()
    return torch.cat(out).numpy()


@contextlib.contextmanager
def entry_lock(folder: Path):
    """An exclusive lock on `.<entry>.lock` beside the entry, held while it is checked and built: the kernel drops it
    when the holder exits, even on kill -9, so a stale lock file never blocks."""
    lock = folder.parent / f".{folder.name}.lock"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # a file where a folder should be, a read-only or full disk
        raise write_error(folder.parent, e, "--cache-dir") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _build_entry(folder: Path, key: str, split_material: dict, backbone, datasets, device, autocast_dtype, why,
                 log) -> tuple[np.ndarray, dict]:
    split = split_material["split"]
    log(f"feature cache miss ({why}) {split} key {key[:24]} → extracting {sum(split_material['n_per_task'])} "
        f"images into {folder}")
    array = extract(backbone, datasets, device, f"features {split}", autocast_dtype)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").unlink(missing_ok=True)  # a stale manifest must not bless the new array
        _atomic_save_npy(folder / "features.npy", array)
        manifest = {"key": key, "material": split_material, "shape": list(array.shape),
                    "dtype": str(array.dtype), "sha256": sha256_file(folder / "features.npy")}
        _atomic_write_json(folder / "manifest.json", manifest)  # last: its presence marks the entry complete
    except OSError as e:  # a full disk, or a file where a folder should be
        raise write_error(folder, e, "--cache-dir") from e
    feats, manifest, why = read_entry(folder, key)
    if feats is None:
        raise OSError(f"feature cache entry {folder} unreadable right after writing it: {why}")
    return feats, manifest


def cached_benchmark(bench: Benchmark, backbone: nn.Module, autocast_dtype, material: dict, cache_dir: Path,
                     device: torch.device, log=print) -> tuple[Benchmark, dict]:
    """Same stream (task_stream over the same tasks and labels) with each image replaced by its cached `backbone`
    features. → (new benchmark, {split: cache info}) for config.json."""
    material = material | {"format": FORMAT_VERSION, "backbone_state_sha256": state_dict_sha256(backbone),
                           # "float32" as before --dtype existed (no key moves), "float64", or "torch.bfloat16"
                           "precision": str(autocast_dtype or str(torch.get_default_dtype()).removeprefix("torch."))}
    streams = {"train": bench.scenario.train_stream, "test": bench.scenario.test_stream}
    sets, info = {}, {}
    for split, stream in streams.items():
        datasets = [exp.dataset for exp in stream]
        frame = bench.frames[split]
        split_material = material | {
            "split": split, "data_sha256": bench.provenance[split].get("sha256"),
            "indices_sha256": hashlib.sha256(frame[["task_id", "index", "target"]].to_numpy().tobytes()).hexdigest(),
            "n_per_task": [len(ds) for ds in datasets]}
        key = cache_key(split_material)
        folder = Path(cache_dir) / "features" / material["backbone"] / f"{split}-{key[:24]}"
        feats, manifest, why = read_entry(folder, key)
        status = "hit"
        if feats is None:
            with entry_lock(folder):  # parallel runs (Ray, several batches) on one key: one extracts, the rest wait
                feats, manifest, why = read_entry(folder, key)  # written while this process waited for the lock?
                if feats is None:
                    feats, manifest = _build_entry(folder, key, split_material, backbone, datasets, device,
                                                   autocast_dtype, why, log)
                    status = "miss"
        if status == "hit":
            log(f"feature cache hit {split} key {key[:24]} ({folder})")
        start, sets[split] = 0, []
        for ds in datasets:
            targets = [int(y) for y in ds.targets]
            sets[split].append((CachedFeatures(feats[start:start + len(ds)], targets), targets))
            start += len(ds)
        info[split] = {"key": key, "status": status, "path": str(folder), "shape": manifest["shape"]}
    return Benchmark.of(sets["train"], sets["test"], bench.tasks, bench.frames, bench.provenance), info


class WithBackbone(nn.Module):
    """A model trained on cached features with its backbone put back in front: what the budget counts and times
    (parameters, latency per image), since the deployed network runs the backbone on every image."""

    def __init__(self, backbone: nn.Module, net: nn.Module):
        super().__init__()
        self.features, self.net = _BackboneOnly(backbone, net), net

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        return self.net(self.features(x), task_labels)


_BACKBONE_MS: dict[str, float] = {}  # this process's measurements, by latency key


def cached_run_latency(backbone: nn.Module, net: nn.Module, probes: list, device: torch.device, backbone_id: dict,
                       cache_dir: Path | None) -> tuple[list[float], dict]:
    """Per-task inference ms/image at batch 1 of a model trained on cached features, as deployed: its backbone's
    latency + its shared layers' and head's. The backbone's part is the same for every run of a grid on one machine
    and is most of a cached run's wall time (a ViT-S/16 at batch 1, 23 passes per task), so it is measured once per
    (backbone, weights, input, device, machine, torch threads) and reused: from this process, else from
    `<cache_dir>/latency/<key>.json`. → (ms per task, how the backbone's part was obtained)."""
    import platform

    from benchmark.runtime.device import latency_ms_per_image

    backbone = backbone.to(device)
    features = _BackboneOnly(backbone, net)
    material = {"backbone": backbone_id.get("weights_sha256", backbone_id.get("weights")),
                "arch": backbone_id.get("arch", backbone_id.get("timm_arch")), "input": backbone_id.get("input"),
                "backbone_state_sha256": state_dict_sha256(backbone),
                "shape": list(probes[0][0].shape), "device": str(device), "machine": platform.node(),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                "threads": torch.get_num_threads(), "torch": torch.__version__}
    key = cache_key(material)[:24]
    file = Path(cache_dir) / "latency" / f"{key}.json" if cache_dir else None
    source = "reused (this process)"
    if key not in _BACKBONE_MS and file is not None and file.is_file():
        try:
            _BACKBONE_MS[key] = float(json.loads(file.read_text())["backbone_ms"])
            source = f"reused ({file})"
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: measure again and rewrite it
    if key not in _BACKBONE_MS:
        _BACKBONE_MS[key] = latency_ms_per_image(features, probes[:1], device)[0]
        source = "measured"
        if file is not None:
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write_json(file, {"backbone_ms": _BACKBONE_MS[key], "material": material})
            except OSError:
                pass  # a read-only cache: the number still serves this process
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        feats = [(features(x.unsqueeze(0).to(device))[0], t) for x, t in probes]
        backbone.train(was)
    head_ms = latency_ms_per_image(net, feats, device)
    return [_BACKBONE_MS[key] + h for h in head_ms], {"backbone_ms": _BACKBONE_MS[key], "backbone_ms_source": source,
                                                      "key": key}


class _BackboneOnly(nn.Module):
    """WithBackbone's first half (the same autocast), callable as model(x, task) for latency_ms_per_image."""

    def __init__(self, backbone: nn.Module, net: nn.Module):
        super().__init__()
        self.backbone, self.dtype = backbone, getattr(net, "autocast_dtype", None)

    def forward(self, x: torch.Tensor, task_labels=None) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            # images are float32 data; a --dtype float64 backbone takes them in its own dtype (as the network does)
            dtype = next((p.dtype for p in self.backbone.parameters()), x.dtype)
            return self.backbone(x.to(dtype)).to(torch.get_default_dtype())


def use_feature_cache(cfg, bench: Benchmark, model, backbone_id: dict, device: torch.device,
                      log=print) -> tuple[Benchmark, nn.Module, dict]:
    """The run's switch: a frozen backbone with --feature-cache (the default) trains on cached features.
    → (the stream to train on, the network to train, backbone identity): cached, the stream holds features and
    the network is `model.with_backbone(nn.Identity())` (the same shared layers and heads); else all as given.
    `model` itself is never changed."""
    if cfg.backbone_mode != "frozen" or not cfg.feature_cache:
        return bench, model, backbone_id
    if STRATEGIES.get(cfg.strategy).meta.prompts_backbone:
        log(f"feature cache: not used: --strategy {cfg.strategy} runs the frozen backbone on images with its prompts "
            f"every step")
        return bench, model, backbone_id
    if model.feature_form != "vector":
        log(f"feature cache: not used for heads that read {model.feature_form}s (the cache holds pooled "
            f"features); the frozen backbone runs every step")
        return bench, model, backbone_id
    material = {"backbone": cfg.backbone, "weights": backbone_id.get("weights_sha256", backbone_id["weights"]),
                "backbone_args": dataclasses.asdict(cfg.backbone_args) if cfg.backbone_args else None,
                "stream": cfg.stream, "stream_args": dataclasses.asdict(cfg.stream_args) if cfg.stream_args else None,
                "input": backbone_id.get("input")}
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    if cache_dir.exists() and not cache_dir.is_dir():  # before the backbone's pass over the data, not after
        raise UserError(f"feature cache folder {cache_dir} is a file; pass another --cache-dir (or "
                        f"--no-feature-cache)")
    bench, info = cached_benchmark(bench, model.backbone, model.autocast_dtype, material, cache_dir, device, log)
    return bench, model.with_backbone(nn.Identity()), backbone_id | {"feature_cache": info}
