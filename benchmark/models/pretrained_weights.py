"""Where a pretrained backbone's weights come from, in this order, and the identity a run records for them.

1. `--backbone-weights PATH` (.pth / .pt / .bin / .safetensors): identity = the file's sha256.
2. The Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`), looked up without any
   network call, so it works with `HF_HUB_OFFLINE=1`: identity = hub id @ snapshot revision (+ the file's sha256).
3. The hub itself (skipped when `HF_HUB_OFFLINE=1`; short timeouts), which fills the cache of step 2.

Every source ends as a local file that timm loads through its own pretrained path
(`timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`: safetensors, or `torch.load`
with `weights_only=True`), so the user's file and the hub's file take the same code path. Nothing falls back to
random weights: with no source, one UserError names the hub id and both ways to supply the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader looks for, in its order
HUB_TIMEOUT_S = 10


@dataclass(frozen=True)
class WeightsSource:
    path: Path  # a local file timm can load
    identity: dict  # recorded in config.json; identity["weights"] is the one-line summary


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def hf_cache_dir() -> Path:
    """huggingface_hub reads these variables once, at import; read them now so a changed environment counts."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    xdg = Path(env.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return Path(env.get("HF_HOME", xdg / "huggingface")).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def from_file(path: str | Path) -> WeightsSource:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--backbone-weights {path}: no such file; pass a .pth or .safetensors checkpoint")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise UserError(f"--backbone-weights {path}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    digest = sha256_file(path)
    return WeightsSource(path, {"weights": f"file {path.name} sha256:{digest}", "weights_source": "file",
                                "weights_file": str(path.resolve()), "weights_sha256": digest})


def manifest_path(weights: Path) -> Path:
    """`hatswap pretrain`'s manifest beside a weights file: `vit_tiny.safetensors` → `vit_tiny.manifest.json`."""
    return weights.with_name(f"{weights.stem}.manifest.json")


def read_weights_manifest(weights: Path, digest: str) -> dict | None:
    """The manifest beside `weights` (None when there is none), after checking that it describes this very file:
    its `weights_sha256` must equal the file's (a copied-over or truncated file is an error, not other weights)."""
    path = manifest_path(weights)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"weights manifest {path} is unreadable ({e}); delete it or restore it") from None
    if manifest.get("weights_sha256") != digest:
        raise UserError(f"--backbone-weights {weights}: sha256 {digest[:16]}… differs from its manifest {path.name} "
                        f"({str(manifest.get('weights_sha256'))[:16]}…); the file was changed or replaced: restore "
                        f"it or pretrain again")
    return manifest | {"manifest": str(path.resolve())}


def _from_hub_file(hub_id: str, local: str | Path, how: str) -> WeightsSource:
    local = Path(local)
    revision = local.parent.name  # …/models--timm--<name>/snapshots/<commit>/<file>
    digest = sha256_file(local)
    return WeightsSource(local, {"weights": f"hf-hub {hub_id}@{revision} ({local.name})", "weights_source": how,
                                 "weights_hub_id": hub_id, "weights_revision": revision, "weights_file": str(local),
                                 "weights_sha256": digest})


def from_hf_cache(hub_id: str) -> WeightsSource | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        hit = try_to_load_from_cache(hub_id, filename, cache_dir=hf_cache_dir())
        if isinstance(hit, str) and Path(hit).is_file():
            return _from_hub_file(hub_id, hit, "hf-cache")
    return None


def missing_weights_error(backbone: str, hub_id: str, why: str) -> UserError:
    return UserError(f"no weights for backbone {backbone} (hub id {hub_id}) {why}: pass --backbone-weights "
                     f"PATH (.pth or .safetensors), or fill the Hugging Face cache {hf_cache_dir()} on a machine "
                     f"with internet (`huggingface-cli download {hub_id}`) and copy it here")


def from_hub(backbone: str, hub_id: str) -> WeightsSource:
    if hub_offline():
        raise missing_weights_error(backbone, hub_id, "in the Hugging Face cache, and HF_HUB_OFFLINE=1")
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_hub_download

    from benchmark.data.source import network_timeout

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:  # huggingface_hub retries an unreachable hub for ~25 s; one short probe tells "offline" at once
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as e:
        raise missing_weights_error(backbone, hub_id, f"in the cache, and {host} is unreachable ({e})") from e
    try:
        with network_timeout(HUB_TIMEOUT_S):
            local = hf_hub_download(hub_id, HUB_FILES[0], cache_dir=hf_cache_dir(), etag_timeout=HUB_TIMEOUT_S)
    except Exception as e:  # offline, DNS, timeout, 404, disk full: all mean "supply the weights yourself"
        first = (str(e).splitlines() or [""])[0][:120]
        raise missing_weights_error(backbone, hub_id, f"in the cache, and the hub failed ({type(e).__name__}: "
                                                      f"{first})") from e
    return _from_hub_file(hub_id, local, "hf-hub download")


def locate_weights(backbone: str, hub_id: str, weights_path: str = "") -> WeightsSource:
    """File flag > Hugging Face cache > hub; raises one UserError when none of them has the weights."""
    if weights_path:
        return from_file(weights_path)
    return from_hf_cache(hub_id) or from_hub(backbone, hub_id)


def check_weights_available(backbone: str, weights_path: str = "") -> None:
    """Batch preflight: fail before any run when a pretrained backbone has no weights (the same error every run
    would hit). Backbones without a hub id (trained from scratch) need nothing."""
    from benchmark.registry import BACKBONES

    meta = BACKBONES.get(backbone).meta
    if meta.hub_id:
        locate_weights(backbone, meta.hub_id, weights_path)
    elif weights_path and meta.weights_file:
        src = from_file(weights_path)
        read_weights_manifest(src.path, src.identity["weights_sha256"])
    elif weights_path:
        raise UserError(f"--backbone-weights applies to pretrained backbones; {backbone} is trained from scratch "
                        f"(drop the flag or pick a dino_* backbone)")
