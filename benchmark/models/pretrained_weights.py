"""Where a pretrained backbone's weights come from, in this order, and the identity a run records for them.

1. `--backbone-weights PATH` (.pth / .pt / .bin / .safetensors): identity = the file's sha256.
2. The Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`), looked up without any
   network call, so it works with `HF_HUB_OFFLINE=1`: identity = hub id @ snapshot revision (+ the file's sha256).
3. The hub itself (skipped when `HF_HUB_OFFLINE=1`; short timeouts), which fills the cache of step 2.

Every source ends as a local file that `load_strictly` loads into the backbone timm built (safetensors, or
`torch.load` with `weights_only=True`), so the user's file and the hub's file take the same code path. Nothing falls
back to random weights: with no source, one UserError names the hub id and both ways to supply the weights.

Loading is strict: every tensor of the backbone comes from the file, and every tensor of the file goes into the
backbone, with its shape. timm's own pretrained path does not promise that: with `num_classes=0` it drops the
classifier and then loads with `strict=False`, logging unexpected keys at a level nobody sees, so a file of another
architecture (or with its keys under a `backbone.` prefix) left the backbone at random init while the run recorded
the file's sha256. The only file tensors a backbone may leave out are the ones it drops by design (a classifier, the
layers a `features_only` model cuts off); their names are recorded. A prefixed or wrapped checkpoint (`module.`,
`backbone.`, DINO's `{"teacher": …, "student": …}`) is refused with the command that converts it, never guessed at.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader looks for, in its order
HUB_TIMEOUT_S = 10
KEYS_SHOWN = 3  # a mismatch names this many keys of each kind, then counts the rest


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
    if not isinstance(manifest, dict):
        raise UserError(f"weights manifest {path} holds a JSON {type(manifest).__name__}, not the object `hatswap "
                        f"pretrain` writes; delete it (the weights then load without their pretraining record) or "
                        f"pretrain again")
    if "weights_sha256" not in manifest:
        raise UserError(f"weights manifest {path} has no weights_sha256, so it cannot vouch for {weights.name}; "
                        f"delete it (the weights then load without their pretraining record) or pretrain again")
    if manifest["weights_sha256"] != digest:
        raise UserError(f"--backbone-weights {weights}: sha256 {digest[:16]}… differs from its manifest {path.name} "
                        f"({str(manifest['weights_sha256'])[:16]}…); the file was changed or replaced: restore "
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


# --- loading a file into a backbone: every key matched -------------------------------------------------------------

# BatchNorm's step counter: torch's own strict load fills it in when a checkpoint lacks it (safetensors files carry
# no version metadata), and it changes no output unless momentum is None, so a file may leave it out.
OPTIONAL_SUFFIX = ".num_batches_tracked"


def _shown(keys: list[str]) -> str:
    more = f", … {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else ""
    return ", ".join(keys[:KEYS_SHOWN]) + more


def _tensors(keys: list) -> str:
    return f"{len(keys)} tensor{'' if len(keys) == 1 else 's'}"


def _first_line(e: Exception, limit: int = 160) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:limit]}"


def _not_weights(path: Path, what: str, why: str) -> UserError:
    return UserError(f"{path} does not hold {what}: {why}")


def convert_command(path: Path, expr: str) -> str:
    """A one-line command that writes `expr` (a state dict made from `sd`, the file's content) beside the file, in
    the file's format: the fix a refused checkpoint's error line names."""
    out = path.with_name(f"{path.stem}-converted{path.suffix}")
    if path.suffix == ".safetensors":
        return (f"python -c \"from safetensors.torch import load_file, save_file; sd = load_file('{path}'); "
                f"save_file({expr}, '{out}')\"")
    return f"python -c \"import torch; sd = torch.load('{path}', weights_only=True); torch.save({expr}, '{out}')\""


def read_state_dict(path: Path, what: str) -> dict:
    """The file's tensors by name, exactly as saved: safetensors, or `torch.load(weights_only=True)`. A file holding
    more than name → tensor (a training checkpoint's `state_dict`/`model`, DINO's `teacher` and `student`) is
    refused, not unwrapped: which sub-dict holds the wanted weights is the user's call, not a guess."""
    import torch

    reader = "safetensors" if path.suffix == ".safetensors" else "torch.load(weights_only=True)"
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            state = safetensors.torch.load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a checkpoint, truncated, or pickled objects beyond tensors (an optimizer, args)
        raise _not_weights(path, what, f"{reader} cannot read it as a state dict ({_first_line(e)}); save the "
                                       f"backbone's state_dict() alone, with torch.save or safetensors") from e
    if not isinstance(state, dict):
        raise _not_weights(path, what, f"it holds a {type(state).__name__}, not a state dict (tensor name → "
                                       f"tensor); save the backbone's state_dict() instead")
    if others := [k for k, v in state.items() if not isinstance(v, torch.Tensor)]:
        if nested := [k for k in others if isinstance(state[k], dict)]:
            example = "teacher" if "teacher" in nested else nested[0]  # DINO evaluates and releases its teacher
            raise _not_weights(path, what, f"{len(nested)} of its entries hold dicts, not tensors ({_shown(nested)}): "
                                           f"a wrapped checkpoint; write the one that holds the backbone on its own, "
                                           f"e.g. {convert_command(path, f'sd[{example!r}]')}")
        keep = "{k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}"
        raise _not_weights(path, what, f"{len(others)} of its entries are not tensors ({_shown(others)}); write "
                                       f"the tensors alone: {convert_command(path, keep)}")
    return state


def _reshaped(state: dict, expected: dict, skip=frozenset()) -> list[str]:
    return [f"{k} file {list(state[k].shape)} backbone {list(shape)}" for k, shape in expected.items()
            if k in state and k not in skip and tuple(state[k].shape) != shape]


def _prefix(missing: list[str], unexpected: list[str]) -> str:
    """The prefix ('module.', 'backbone.') under which the file holds every missing tensor, or ''."""
    if not missing:
        return ""
    for key in unexpected:
        if key.endswith(f".{missing[0]}"):
            prefix = key[: -len(missing[0])]
            held = {k[len(prefix):] for k in unexpected if k.startswith(prefix)}
            if all(k in held for k in missing):
                return prefix
    return ""


def classifier_keys(model) -> list[str]:
    """The tensors of the classifier named in a timm model's pretrained config, which a backbone built with
    `num_classes=0` drops (as timm's own loader does): a checkpoint may hold them, none is loaded."""
    names = model.pretrained_cfg.get("classifier") or ()
    return [f"{name}.{p}" for name in ([names] if isinstance(names, str) else names) for p in ("weight", "bias")]


def load_strictly(model, path: Path, what: str, fix: str, *, filter_fn: Callable | None = None,
                  resampled: Iterable[str] = (), unused: Iterable[str] = ()) -> dict:
    """Load the weights file at `path` into `model`: every tensor of the model from the file, every tensor of the
    file into the model, with the model's shape. → what the run records beyond the file's identity:
    {"weights_unused_keys": [...]} when the file held tensors the backbone drops by design, else {}.

    what: "<architecture> weights", for the error line; fix: its remedy for missing, unexpected or reshaped tensors.
    filter_fn(state, model): timm's conversion of a checkpoint to the model's layout (a ViT's `checkpoint_filter_fn`:
    DINOv2's original key names; position embeddings resampled to the model's patch grid).
    resampled: the keys filter_fn may bring to the model's shape. Every other shape must already be the model's,
    checked before filter_fn, which would also resample a patch embedding of another patch size without a word.
    unused: file keys the backbone drops by design (a classifier, layers a `features_only` model cuts off)."""
    state = read_state_dict(path, what)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if filter_fn is not None:
        if reshaped := _reshaped(state, expected, skip=set(resampled)):
            raise _not_weights(path, what, f"{_tensors(reshaped)} of another shape ({_shown(reshaped)}); {fix}")
        try:
            state = filter_fn(state, model)
        except Exception as e:  # timm's conversion met something it does not know: not this architecture
            raise _not_weights(path, what, f"timm cannot convert it ({_first_line(e)}); {fix}") from e
    dropped = [k for k in unused if k in state and k not in expected]
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    reshaped = _reshaped(state, expected)
    if missing or unexpected or reshaped:
        found = [f"{_tensors(missing)} of the backbone missing ({_shown(missing)})"] if missing else []
        found += [f"{_tensors(unexpected)} unexpected ({_shown(unexpected)})"] if unexpected else []
        found += [f"{_tensors(reshaped)} of another shape ({_shown(reshaped)})"] if reshaped else []
        if prefix := _prefix(missing, unexpected):
            strip = f"{{k[{len(prefix)}:]: v for k, v in sd.items() if k.startswith({prefix!r})}}"
            fix = f"the file holds the backbone under the prefix {prefix!r}; write it without: " \
                  f"{convert_command(path, strip)}"
        raise _not_weights(path, what, f"{', '.join(found)}; {fix}")
    model.load_state_dict(state, strict=True)
    return {"weights_unused_keys": dropped} if dropped else {}

