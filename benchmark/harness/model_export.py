"""A run's final model on disk (`--save-model`) and back (`benchmark.load_run`), with no pickle anywhere:

    <run folder>/model.safetensors   the whole state_dict of the network as deployed: the model the strategy trained
                                     (strategy.model), behind its backbone again when it trained on cached features
    <run folder>/model.json          the manifest: format version, the file's sha256, the config (config.json holds
                                     it in full), the stream's tasks and the heads' tasks (names, kinds, params), head
                                     shapes, the input (image size, channels), the backbone's weights identity

Both are written into the run folder's temporary twin and renamed into place with it (results.write_run), so a
crash leaves neither. Loading rebuilds the network as the run did (the same MODELS builder from config.json and the
recorded tasks, the strategy's own wrapping, the feature cache's view) and loads it strictly, after checking the
sha256: a missing, partial or edited file is one line naming the fix, never a half-loaded model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from avalanche.training.plugins import EvaluationPlugin
from safetensors.torch import load_file, save_file
from torch import nn

from benchmark.config import ENTRY_FIELDS, RunConfig, build_parser, parse_with_entries
from benchmark.errors import UserError
from benchmark.harness.feature_cache import WithBackbone
from benchmark.models.backbone_training import build_optimizer
from benchmark.models.pretrained_weights import sha256_file
from benchmark.registry import MODELS, STRATEGIES
from benchmark.runtime.device import compute_dtype
from benchmark.tasks import TaskCriterion, TaskSpec

MODEL_FILE, MANIFEST_FILE, FORMAT_VERSION = "model.safetensors", "model.json", 1


def deployed(model: nn.Module, trained: nn.Module, cached: bool) -> nn.Module:
    """The network that classifies images: what the strategy trained, behind `model`'s backbone when it trained on
    cached features (it then has none of its own)."""
    return WithBackbone(model.backbone, trained) if cached else trained


def plain_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """net's state_dict as safetensors stores it: contiguous CPU copies (tied tensors each their own copy), keys
    without torch.compile's `_orig_mod.` (a --compile run loads into the plain network)."""
    return {k.replace("_orig_mod.", ""): v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}


def spec_dict(spec: TaskSpec) -> dict:
    return {"name": spec.name, "kind": spec.kind, "params": dataclasses.asdict(spec.params), "about": spec.about}


def save_model(folder: Path, net: nn.Module, cfg_dict: dict, tasks, heads, image: tuple[int, int], cached: bool,
               backbone_id: dict) -> None:
    """Write model.safetensors, then model.json, into `folder` (the run folder's temporary twin). `tasks`: the stream's
    TaskSpecs; `heads`: the model's (harness.scenarios.model_tasks); `image`: (size, channels) of its input."""
    state = plain_state(net)
    save_file(state, str(folder / MODEL_FILE), metadata={"format": "hatswap-run-model", "version": str(FORMAT_VERSION)})
    manifest = {"format_version": FORMAT_VERSION, "file": MODEL_FILE, "sha256": sha256_file(folder / MODEL_FILE),
                "config": "config.json", "architecture": cfg_dict["architecture"], "strategy": cfg_dict["strategy"],
                "scenario": cfg_dict["scenario"], "tasks": [spec_dict(t) for t in tasks],
                "head_tasks": [spec_dict(t) for t in heads],
                "head_shapes": {k: list(v.shape) for k, v in state.items() if ".heads." in f".{k}"},
                "image_size": image[0], "in_chans": image[1], "feature_cache": cached,
                "backbone": {k: backbone_id.get(k) for k in ("weights", "weights_sha256", "mode", "params")},
                "parameters": sum(v.numel() for v in state.values()), "dtype": cfg_dict.get("dtype", "float32")}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def run_config(flat: dict, where: str, flags: list[str] | None = None) -> RunConfig:
    """The RunConfig a run's config.json records, through the flags' own parsing (as a --config file would be);
    `flags` override it (`hatswap evaluate --stream NAME --NAME.knob V`)."""
    return parse_with_entries(build_parser(), RunConfig, ENTRY_FIELDS, flags or [], lambda ns: [(flat, where)])[0]


def read_saved(folder: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """→ (config.json's record, the manifest, the checked tensors); a folder without a saved model, or whose file
    does not match its manifest, is one line naming the fix."""
    folder = Path(folder)
    redo = "rerun it with --save-model (and --force, as its results exist): `hatswap run ... --save-model --force`"
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a run folder (no config.json); pass a folder under results/runs/")
    if not (folder / MANIFEST_FILE).is_file() or not (folder / MODEL_FILE).is_file():
        raise UserError(f"{folder} holds no saved model ({MODEL_FILE} and {MANIFEST_FILE}); {redo}")
    try:
        record, manifest = (json.loads((folder / n).read_text()) for n in ("config.json", MANIFEST_FILE))
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: config.json or {MANIFEST_FILE} unreadable ({e}); {redo}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{folder / MANIFEST_FILE} has format version {manifest.get('format_version')}, this hatswap "
                        f"reads {FORMAT_VERSION}; {redo}")
    if (found := sha256_file(folder / MODEL_FILE)) != manifest.get("sha256"):
        raise UserError(f"{folder / MODEL_FILE} does not match {MANIFEST_FILE} (sha256 {found[:12]}, recorded "
                        f"{str(manifest.get('sha256'))[:12]}): the file was changed or is incomplete; {redo}")
    return record, manifest, load_file(str(folder / MODEL_FILE))


def rebuild(cfg: RunConfig, manifest: dict, model_tasks=None, image: tuple[int, int] | None = None):
    """→ (model as MODELS builds it, the network the strategy trains): the run's construction, untrained. `model_tasks`
    and `image` default to the manifest's."""
    heads = model_tasks or [TaskSpec(**t) for t in manifest["head_tasks"]]
    size, chans = image or (manifest["image_size"], manifest["in_chans"])
    model, _ = MODELS.get(cfg.architecture).build(cfg, heads, image_size=size, in_chans=chans)
    net = model.with_backbone(nn.Identity()) if manifest["feature_cache"] else model
    strategy = build_strategy(cfg, net, [], [TaskSpec(**t) for t in manifest["tasks"]], torch.device("cpu"))
    return model, strategy.model  # the strategy's own wrapping of the network (progressive: its columns)


def build_strategy(cfg: RunConfig, net: nn.Module, plugins: list, tasks, device, evaluator=None):
    """The run's strategy (an Avalanche template) over `net`, as `hatswap run` builds it; `tasks`: the stream's."""
    entry = STRATEGIES.get(cfg.strategy)
    entry.meta.refuse_tasks(cfg.strategy, net.tasks)  # the heads' kinds, as the scenario built them
    return entry.build(
        cfg.strategy_args, plugins=plugins, model=net,
        optimizer=build_optimizer(net, cfg.lr, entry.meta.backbone_lr(cfg), cfg.weight_decay, cfg.optimizer),
        criterion=TaskCriterion(tasks), train_mb_size=cfg.batch_size, train_epochs=cfg.epochs,
        eval_mb_size=cfg.eval_batch_size, device=device, evaluator=evaluator or EvaluationPlugin(loggers=[]),
        eval_every=-1)


def load_strictly(net: nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"{folder / MODEL_FILE} does not fit the network its config.json builds "
                        f"({str(e).splitlines()[0]}); rerun it with --save-model --force") from None


def load_run(folder) -> nn.Module:
    """The final model of the run in `folder` (written with --save-model), on the CPU in eval mode, ready for
    inference: `net(images, task_labels)` → B × max(head dims) scores (task_labels: an int or a B-tensor), as the
    run evaluated it. A run of a multi-task architecture (`--architecture mmoe`) needs it registered first
    (benchmark.mtl.continual.register_models(), as `hatswap` does)."""
    folder = Path(folder)
    record, manifest, state = read_saved(folder)
    cfg = run_config(record["config"], str(folder / "config.json"))
    with compute_dtype(cfg.dtype):
        model, trained = rebuild(cfg, manifest)
        net = deployed(model, trained, manifest["feature_cache"])
    load_strictly(net, state, folder)
    return net.eval()
