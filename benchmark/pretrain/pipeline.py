"""`hatswap pretrain`: the weights of a recipe on a source's train images, trained once.

    key = sha256(recipe, data files' sha256)  →  folder (benchmark/pretrain/artifact.py)
    the same key committed under results/reference/pretrain/ (sha256 checked)  →  those weights, nothing trained
    a complete result there (manifest naming the weights file's sha256)  →  cache hit, nothing trained
    else: train (resuming from the folder's checkpoint) → the teacher's backbone as safetensors → manifest
    then, unless --no-evaluate: k-NN and linear probe vs random init and raw pixels (and, with --eval-supervised,
    the same ViT trained on the labels), on all the train images, with a quick check on a subsample beside them,
    stored in the manifest; --reevaluate scores existing weights again (the committed ones too)

The evaluation loads the file through the run's own path (`create_vit_tiny(..., weights_file)`), so what it scores
is what `--backbone-weights` gives a run. One process trains a folder at a time (a lock, as for run folders).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from benchmark.data.loading import load_source, materialize_images
from benchmark.errors import UserError
from benchmark.models.vit_tiny import architecture, create_vit_tiny
from benchmark.outputs.results import ensure_writable, git_state, lock_folder, package_versions, write_error
from benchmark.outputs.run_lock import release_run_folder
from benchmark.pretrain import artifact
from benchmark.pretrain.config import PretrainConfig, parse_pretrain_config
from benchmark.pretrain.evaluation import evaluate, table
from benchmark.pretrain.supervised import train_supervised
from benchmark.pretrain.train import train
from benchmark.runtime.device import prepare_runtime

METHOD = "DINO (Caron et al. 2021)"
SUPERVISED = "supervised (labels, same budget)"
# Weights committed with the code (results/reference/pretrain/<source>/<backbone>-<key>/): a recipe whose key is
# there needs no pretraining on a fresh clone.
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"


def subsample(total: int, n: int, seed: int) -> np.ndarray:
    """Row indices: all `total`, or n of them drawn with the seed (sorted)."""
    rng = np.random.default_rng(seed)
    return np.arange(total) if n == 0 or n >= total else np.sort(rng.choice(total, n, replace=False))


def source_split(cfg: PretrainConfig, train: bool, n: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images N×C×H×W in [-1, 1], labels N, provenance): all of the split, or n of it drawn with the seed."""
    src = load_source(cfg.source, str(cfg.data_root), train, cfg.image_size, cfg.download, cfg.apt_install)
    idx = subsample(len(src.targets), n, cfg.seed + (0 if train else 1))
    labels = torch.as_tensor(np.asarray(src.targets)[idx], dtype=torch.long)
    return materialize_images(src.dataset, idx), labels, src.provenance


def use_flags(cfg: PretrainConfig) -> str:
    """The run flags that load these weights (the path left as a placeholder: the folder may be copied)."""
    sizes = " ".join(f"--vit_tiny.{k.replace('_', '-')} {v}" for k, v in vars(cfg.backbone_args).items())
    return f"--backbone vit_tiny --backbone-weights <this folder>/vit_tiny.safetensors {sizes}"


def pretrain(cfg: PretrainConfig, force: bool = False, reevaluate: bool = False) -> tuple[Path, str]:
    """→ (weights file, "cached" | "done"); `reevaluate`: existing weights are scored again (see `rescore`)."""
    device = prepare_runtime(cfg)
    provenance = load_source(cfg.source, str(cfg.data_root), True, cfg.image_size, cfg.download,
                             cfg.apt_install).provenance
    if not provenance.get("sha256"):
        raise UserError(f"source {cfg.source} records no sha256 of its files, so its pretraining cannot be keyed; "
                        f"pick a source that does (fashion_mnist, cifar10)")
    key = artifact.pretrain_key(cfg.recipe(), provenance["sha256"])
    reference = artifact.weights_file(artifact.pretrain_folder(REFERENCE_DIR, cfg.source, cfg.backbone, key),
                                      cfg.backbone)
    if not force and (manifest := artifact.cached_manifest(reference)):
        print(f"[pretrain] using the committed weights of this recipe and data: {reference} ({manifest['epochs']} "
              f"epochs, seed {manifest['seed']}, sha256 checked); --force trains them here", file=sys.stderr)
        if reevaluate:
            rescore(cfg, reference, manifest, device)
        show_stored_evaluation(manifest)
        return reference, "cached"
    folder = artifact.pretrain_folder(cfg.out_dir, cfg.source, cfg.backbone, key)
    ensure_writable(cfg.out_dir)  # a read-only or full disk: one line now, not after an epoch of training
    if holder := lock_folder(folder):
        raise UserError(f"{folder} is being pretrained by process {holder}; wait for it, then rerun (a cache hit)")
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(folder, e) from e
        return _pretrain_locked(cfg, force, device, key, folder, provenance, reevaluate)
    finally:
        with contextlib.suppress(OSError):  # empty only when it failed before its first checkpoint: nothing to keep
            folder.rmdir()
        release_run_folder(folder)


def _pretrain_locked(cfg, force, device, key, folder, provenance, reevaluate) -> tuple[Path, str]:
    weights = artifact.weights_file(folder, cfg.backbone)
    manifest = None if force else artifact.cached_manifest(weights)
    scored = manifest and manifest.get(cfg.evaluation_key(), {}).get("settings") == cfg.evaluation() and not reevaluate
    if manifest and (not cfg.evaluate or scored):
        print(f"[pretrain] cache hit: {weights} (key {key[:16]}, {manifest['epochs']} epochs, seed "
              f"{manifest['seed']}); --force trains again", file=sys.stderr)
        show_stored_evaluation(manifest)
        return weights, "cached"
    if manifest is None:
        manifest = make_weights(cfg, key, folder, weights, provenance, force, device)
    if cfg.evaluate:
        rescore(cfg, weights, manifest, device)
        show_stored_evaluation(manifest)
    return weights, "done"


def make_weights(cfg, key, folder, weights, provenance, force, device) -> dict:
    """Train (or cast the same recipe's float32 weights when they exist: what training gives, before the cast),
    write the weights file in `cfg.weights_dtype`, then its manifest (→ the manifest)."""
    found = None if force else full_precision_weights(cfg, provenance["sha256"])
    checkpoint = folder / "checkpoint.pt"
    if found:
        source, trained = found
        state_dict = safetensors.torch.load_file(str(source))
        # what trained them is the float32 run's (its versions and commit too); the cast's own beside its source
        record = {k: trained[k] for k in ("train_images", "epoch_losses", "train_wall_s", "device", "torch_threads",
                                          "versions", "git")}
        record["cast_from"] = {"key": trained["key"], "weights_sha256": trained["weights_sha256"],
                               "versions": package_versions(), "git": git_state()}
        size, channels = trained["architecture"]["image_size"], trained["architecture"]["in_chans"]
        print(f"[pretrain] the same recipe's float32 weights exist ({source}): stored as {cfg.weights_dtype}, "
              f"nothing trained", file=sys.stderr)
    else:
        if force:
            checkpoint.unlink(missing_ok=True)
        code = {"versions": package_versions(), "git": git_state()}  # the code that trains, not the code at the end
        images, _, _ = source_split(cfg, True, cfg.train_images)  # labels never read
        state = train(cfg, images, key, checkpoint, device)
        state_dict = state.teacher.backbone.state_dict()
        size, channels = images.shape[-1], images.shape[1]
        record = {"train_images": len(images), "epoch_losses": state.losses, "train_wall_s": round(state.seconds, 1),
                  "device": state.trained_on, "torch_threads": torch.get_num_threads(), **code}
    dtype = getattr(torch, cfg.weights_dtype)
    digest = artifact.save_weights({k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()},
                                   weights)
    manifest = {"method": METHOD, "format": artifact.FORMAT_VERSION, "key": key, "backbone": cfg.backbone,
                "architecture": architecture(cfg.backbone_args, size, channels), "source": cfg.source,
                "data_sha256": provenance["sha256"], "data": provenance, "train_images": record.pop("train_images"),
                "epochs": cfg.epochs, "seed": cfg.seed, "recipe": cfg.recipe(), "weights_file": weights.name,
                "weights_sha256": digest, "weights_dtype": cfg.weights_dtype, "use": use_flags(cfg), **record}
    artifact.write_manifest(weights, manifest)  # the weights are complete: an interrupted evaluation keeps them
    checkpoint.unlink(missing_ok=True)
    how = f"cast from key {found[1]['key'][:16]}" if found else f"{record['train_wall_s']:.0f}s of training"
    print(f"[pretrain] wrote {weights} (sha256 {digest[:16]}…, {how})", file=sys.stderr)
    return manifest


def full_precision_weights(cfg: PretrainConfig, data_sha256: str) -> tuple[Path, dict] | None:
    """With `--weights-dtype float16`: the same recipe's float32 weights file and manifest, committed or under
    `--out-dir`, intact (sha256 checked); None otherwise."""
    if cfg.weights_dtype == "float32":
        return None
    key = artifact.pretrain_key(dataclasses.replace(cfg, weights_dtype="float32").recipe(), data_sha256)
    for root in (REFERENCE_DIR, cfg.out_dir):
        weights = artifact.weights_file(artifact.pretrain_folder(root, cfg.source, cfg.backbone, key), cfg.backbone)
        manifest = artifact.cached_manifest(weights)  # the folder holds a key's first 16 digits: check all of it
        if manifest and manifest.get("key") == key and manifest.get("weights_dtype", "float32") == "float32":
            return weights, manifest
    return None


def rescore(cfg: PretrainConfig, weights: Path, manifest: dict, device: torch.device) -> None:
    """The manifest's evaluation, made again under `cfg`'s settings and written back (atomically). The weights and
    their key are untouched: how they are scored is not part of what they are."""
    if not cfg.evaluate:
        raise UserError("--reevaluate with --no-evaluate scores nothing; drop one of them")
    ensure_writable(weights.parent)
    manifest[cfg.evaluation_key()] = evaluation(cfg, weights, manifest, device)
    artifact.write_manifest(weights, manifest)


def show_stored_evaluation(manifest: dict) -> None:
    if val := manifest.get("validation"):
        print(f"[pretrain] validation (choosing a recipe): probes trained on {val['train_images']} train images, "
              f"scored on {val['val_images']} held-out train images:\n{table(val['rows'])}", file=sys.stderr)
    ev = manifest.get("evaluation")
    if not ev:
        return
    print(f"[pretrain] probes trained on {ev.get('train_images')} train images, scored on {ev.get('test_images')} "
          f"test images:\n{table(ev['rows'])}", file=sys.stderr)
    if quick := ev.get("quick_check"):
        print(f"[pretrain] quick check (probes on a {quick['train_images']}-image subsample, not the headline):\n"
              f"{table(quick['rows'])}", file=sys.stderr)


def probe_splits(cfg: PretrainConfig) -> tuple[tuple, tuple]:
    """(what the probes learn from, what they are scored on), each (images, labels, provenance): the train split (all
    of it unless --eval-train-images) and the test split; with --eval-split val, the train split without a seeded
    hold-out of --eval-val-images rows, and that hold-out (the test split never read)."""
    train = source_split(cfg, True, cfg.eval_train_images)
    if cfg.eval_split == "test":
        return train, source_split(cfg, False, cfg.eval_test_images)
    images, labels, provenance = train
    if cfg.eval_val_images >= len(labels):
        raise UserError(f"--eval-val-images {cfg.eval_val_images} leaves no train image for the probes (the split "
                        f"has {len(labels)}); hold out fewer")
    held = torch.zeros(len(labels), dtype=torch.bool)
    held[torch.as_tensor(subsample(len(labels), cfg.eval_val_images, cfg.seed + 2))] = True
    return (images[~held], labels[~held], provenance), (images[held], labels[held], provenance)


def evaluation(cfg: PretrainConfig, weights: Path, manifest: dict, device: torch.device) -> dict:
    """The pretrained file (loaded as a run loads it), the same architecture at its random init (the student's
    starting point: same seed), raw pixels and, with --eval-supervised, the same ViT trained on the labels of the
    pretraining's images (benchmark/pretrain/supervised.py): probes on the source's labelled train split (all of it
    unless --eval-train-images) → its test split; beside them the quick check, the probes on a seeded subsample."""
    arch = manifest["architecture"]
    size, channels = arch["image_size"], arch["in_chans"]
    train_split, test_split = probe_splits(cfg)
    torch.manual_seed(cfg.seed)
    backbones = {"random init": create_vit_tiny(cfg.backbone_args, size, channels),
                 "DINO pretrained": create_vit_tiny(cfg.backbone_args, size, channels, weights)}
    n_classes = len(load_source(cfg.source, str(cfg.data_root), False, cfg.image_size, cfg.download,
                                cfg.apt_install).classes)
    extra = {}
    if cfg.eval_supervised:
        # on validation, the labels of the probes' own rows only (the held-out ones are what it is scored on)
        images, labels, _ = source_split(cfg, True, cfg.train_images) if cfg.eval_split == "test" else train_split
        backbones[SUPERVISED], extra["supervised"] = train_supervised(cfg, images, labels, n_classes, device)
    n_train = len(train_split[1])
    quick = cfg.eval_quick_images if 0 < cfg.eval_quick_images < n_train else 0
    subsets = {"quick": torch.as_tensor(subsample(n_train, quick, cfg.seed))} if quick else {}
    rows, subset_rows = evaluate(backbones, train_split[:2], test_split[:2], n_classes, cfg.knn_k,
                                 cfg.knn_temperature, cfg.eval_batch_size, device, subsets)
    order = ["DINO pretrained", "random init", "raw pixels", *([SUPERVISED] if cfg.eval_supervised else [])]
    scored = "the held-out train images (validation)" if cfg.eval_split == "val" else "its test split"
    out = {"settings": cfg.evaluation(), "train_images": n_train, f"{cfg.eval_split}_images": len(test_split[1]),
           "protocol": f"features of the source's labelled train images → {scored}; k-NN: cosine, exp(s/T) "
                       "votes; linear: L-BFGS logistic regression on standardised features",
           "rows": {k: rows[k] for k in order}, **extra}
    if quick:
        out["quick_check"] = {"train_images": quick, "rows": {k: subset_rows["quick"][k] for k in order},
                              "protocol": "the same probes trained on a seeded subsample of those train images: a "
                                          "quick check, not the headline"}
    return out


def pretrain_for_run(profile_name: str, run_cfg) -> Path:
    """A profile's "pretrain" section, run where the batch's runs read and write (data root, out dir, device,
    threads, download switches of `run_cfg`) → the weights file its runs load."""
    switches = [f"--{'' if getattr(run_cfg, k) else 'no-'}{k.replace('_', '-')}" for k in ("download", "apt_install")]
    cfg, _ = parse_pretrain_config(["--profile", profile_name, "--data-root", str(run_cfg.data_root), "--out-dir",
                                    str(run_cfg.out_dir), "--device", run_cfg.device, "--threads",
                                    str(run_cfg.threads), *switches])
    print(f"[batch] profile {profile_name}: pretraining its backbone first ({METHOD}; a cache hit once done)",
          file=sys.stderr)
    return pretrain(cfg)[0]
