"""Where a pretraining recipe's files live, and how they are written.

    <out_dir>/pretrain/<source>/<backbone>-<key[:16]>/
        <backbone>.safetensors      the teacher's backbone, a timm state dict (`--backbone-weights` loads it)
        <backbone>.manifest.json    written last: recipe, data sha256, epochs, seed, the file's sha256, evaluation
        checkpoint.pt               while training: the state after the last complete epoch (removed at the end)

key = sha256 of (format, recipe, the data files' sha256): the same recipe on the same data is a cache hit; any
knob that changes the weights, or other data, is another folder. Every file goes to a temporary name and is renamed
into place (os.replace), so a reader sees a whole file or none; a manifest whose sha256 disagrees with the weights
file is no hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import safetensors.torch
import torch

from benchmark.models.pretrained_weights import manifest_path, sha256_file
from benchmark.outputs.results import atomic_write, write_error

FORMAT_VERSION = 1


def pretrain_key(recipe: dict, data_sha256: str) -> str:
    material = {"format": FORMAT_VERSION, "recipe": recipe, "data_sha256": data_sha256}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def pretrain_folder(out_dir: Path, source: str, backbone: str, key: str) -> Path:
    return Path(out_dir) / "pretrain" / source / f"{backbone}-{key[:16]}"


def weights_file(folder: Path, backbone: str) -> Path:
    return folder / f"{backbone}.safetensors"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_weights(state_dict: dict, path: Path) -> str:
    """A timm state dict → safetensors at `path`, atomically; → the file's sha256."""
    data = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})
    write_atomically(path, lambda f: f.write(data))
    return sha256_file(path)


def write_atomically(path: Path, write) -> None:
    """write(binary file) into a temporary file, renamed into place. Through a Python file, whose failed write is an
    OSError with its errno: torch.save and safetensors' own writers report a full disk as a RuntimeError ("unexpected
    pos") or a SafetensorError. A full disk, or any OSError, is one line naming the path; the temporary file goes."""
    tmp = _tmp(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from e


def write_manifest(weights: Path, manifest: dict) -> Path:
    path = manifest_path(weights)
    atomic_write(path, json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    return path


def cached_manifest(weights: Path) -> dict | None:
    """The manifest of a complete, intact result: present, readable and naming this file's sha256; else None."""
    path = manifest_path(weights)
    if not (path.is_file() and weights.is_file()):
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    intact = isinstance(manifest, dict) and manifest.get("weights_sha256") == sha256_file(weights)
    return manifest if intact else None


def save_checkpoint(path: Path, state: dict) -> None:
    write_atomically(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, key: str) -> dict | None:
    """The checkpoint of this key (None when absent, unreadable, or another recipe's)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file cannot come from us (os.replace), a foreign one can
        print(f"[pretrain] {path} is unreadable ({type(e).__name__}); starting from epoch 0", file=sys.stderr)
        return None
    return state if state.get("key") == key else None
