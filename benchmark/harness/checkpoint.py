"""Per-experience checkpoints (`--checkpoint`): a run killed during experience k starts again from the end of
experience k − 1 and ends with the R, losses and model of an uninterrupted run, bit for bit, on the same machine.

After each experience's row of R, the harness writes under the run's folder's parent

    .seed<k>.checkpoint/exp<i>.safetensors   every tensor: the model's state_dict, the optimizer's state, each
                                             plugin's state (benchmark/runtime/state.py), the model's buffers
                                             (non-persistent ones too) and what a module keeps outside its
                                             state_dict (`checkpoint_state()` / `load_checkpoint_state(state)`:
                                             CODA-Prompt's generator, RanPAC's λs), the strategy's own generators,
                                             torch's global generator
    .seed<k>.checkpoint/exp<i>.json          written last: the format, the run's config (its identity), the
                                             experiences done, the rows of R so far, the training log, the JSON
                                             skeleton of every state, the tensors file's sha256

no pickle anywhere (tensors load with safetensors; the rest is JSON), each file written under a temporary name and
renamed; the older checkpoint is removed once the newer one is complete (so a run holds one, two for the moment a
new one is written). A rerun of the same config finds the newest complete checkpoint whose config matches and
resumes after it; a checkpoint of another config, an edited or partial one, or --force, starts from nothing, said
in one line. The folder goes when the run folder is written, unless --keep-checkpoints.

What makes a resume exact: every experience starts from seeds derived from (run seed, experience)
(benchmark/runtime/randomness.py), so the state at an experience's end — the model, the optimizer, the plugins'
state, the strategy's own generators, Avalanche's clock — is all the next experiences read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.plugins.clock import Clock
from avalanche.training.templates.base_sgd import PeriodicEval
from safetensors.torch import load_file, save_file

from benchmark.errors import UserError
from benchmark.harness.evaluation import EvaluationLog
from benchmark.models.pretrained_weights import sha256_file
from benchmark.outputs.results import NOT_IDENTITY, package_versions
from benchmark.runtime.state import global_rng_state, has_state_protocol, pack, set_global_rng_state, unpack

FORMAT_VERSION = 1
NOT_STATE = (EvaluationPlugin, PeriodicEval)  # Avalanche's metrics (R never reads them) and periodic eval (off)


def checkpoint_dir(run_folder: Path) -> Path:
    return Path(run_folder).parent / f".{Path(run_folder).name}.checkpoint"


def checkpointing(cfg, meta, cached: bool) -> bool:
    """The rule for `--checkpoint auto`: on when the backbone runs at every training step (fine-tuned, last-k, or
    frozen without the feature cache, which prompt methods and the dense suite's map-reading heads bypass: minutes a
    run), off on cached features (`cached`: the run trains on them; seconds a run, cheaper to redo) and for a
    one-shot strategy (joint training is one experience: nothing to resume between)."""
    if meta.one_shot or cfg.checkpoint == "off":
        return False
    return cfg.checkpoint == "on" or not cached


def code_identity(device) -> dict:
    """What computes a run besides its config: the sha256 of the package's sources and data files (benchmark/ and
    strategies/: .py and .json, so an uncommitted edit, a tuned record or an install without git counts), the
    computing packages' versions and the device kind (a checkpoint resumes only where it was written: on another
    device the numbers would differ)."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted(p for top in ("benchmark", "strategies") for ext in ("*.py", "*.json")
                       for p in (root / top).rglob(ext)):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = {k: v for k, v in package_versions().items() if k != "wandb"}  # logging only: not what computes
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else ""
    return {"sources_sha256": digest.hexdigest(), "versions": versions, "device": [torch.device(device).type, name]}


def identity(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in NOT_IDENTITY}


def stateful_plugins(strategy) -> list:
    return [p for p in strategy.plugins if not isinstance(p, (Clock, RestoreOptimizer, *NOT_STATE))]


def unsupported_plugins(strategy) -> list[str]:
    """The plugins without the state protocol: a run with one cannot be checkpointed."""
    return [type(p).__name__ for p in stateful_plugins(strategy) if not has_state_protocol(p)]


@dataclass
class Restored:
    """A checkpoint read back: `record` (its JSON), `tensors`."""

    record: dict
    tensors: dict[str, torch.Tensor]
    state: dict | None = None  # the record's state, unpacked

    @property
    def experiences_done(self) -> int:
        return self.record["experiences_done"]


class RunCheckpoint:
    """The checkpoints of one run (module docstring)."""

    def __init__(self, run_folder: Path, cfg_dict: dict, log=print, code: dict | None = None, batch: str = ""):
        """`code`: what computes (code_identity): a checkpoint resumes only under the code and on the device kind
        that wrote it. `batch`: the id of the batch writing it (a Ray retry of a --force batch keeps its own)."""
        self.dir, self.config, self.log, self.code = checkpoint_dir(run_folder), identity(cfg_dict), log, code or {}
        self.batch = batch

    def files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.dir.glob("exp*.json") if self.dir.is_dir() else []:
            try:
                found.append((int(path.stem[3:]), path))
            except ValueError:
                continue
        return sorted(found)

    def load(self) -> Restored | None:
        """The newest complete checkpoint of this config, or None (said in one line when one is there but unusable)."""
        files = self.files()
        if not files:
            return None
        why, restored = self._read(files[-1][1])
        if restored is None:
            self.log(f"checkpoint {files[-1][1]} not used ({why}); starting from the beginning")
        return restored

    def _read(self, path: Path) -> tuple[str, Restored | None]:
        try:
            record = json.loads(path.read_text())
            tensors_file = path.with_suffix(".safetensors")
            if record.get("format_version") != FORMAT_VERSION:
                return "another format version", None
            if record.get("config") != self.config:
                return "written by another config of this run", None
            if record.get("code", {}).get("device") != self.code.get("device"):
                return f"written on another device ({record.get('code', {}).get('device')})", None
            if record.get("code") != self.code:
                return "written by other code: other sources of benchmark/ or strategies/, or package versions", None
            if sha256_file(tensors_file) != record["tensors_sha256"]:
                return "its tensors file does not match its record", None
            restored = Restored(record, load_file(str(tensors_file)))
            restored.state = unpack(record["state"], restored.tensors)
            int(record["experiences_done"])
            return "", restored
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:  # safetensors' errors subclass these
            return f"unreadable: {type(e).__name__}: {e}", None

    def save(self, experiences_done: int, state: dict) -> int:
        """Write checkpoint `experiences_done` (tensors, then the JSON record), then remove the older ones; → its
        size in bytes."""
        tensors: dict[str, torch.Tensor] = {}
        skeleton = pack(state, "state", tensors)
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self.dir / f"exp{experiences_done}"
        tmp = {s: self.dir / f".{stem.name}.tmp-{os.getpid()}{s}" for s in (".safetensors", ".json")}
        try:
            save_file(tensors, str(tmp[".safetensors"]), metadata={"format": "hatswap-checkpoint"})
            os.replace(tmp[".safetensors"], stem.with_suffix(".safetensors"))
            record = {"format_version": FORMAT_VERSION, "experiences_done": experiences_done, "config": self.config,
                      "code": self.code, "batch": self.batch,
                      "tensors_sha256": sha256_file(stem.with_suffix(".safetensors")), "state": skeleton,
                      "torch": torch.__version__, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            tmp[".json"].write_text(json.dumps(record) + "\n")
            os.replace(tmp[".json"], stem.with_suffix(".json"))
        except OSError as e:
            for p in tmp.values():
                p.unlink(missing_ok=True)
            raise UserError(f"cannot write the checkpoint {stem}.*: {e.strerror or e}; free space under "
                            f"{self.dir.parent} or run with --checkpoint off") from None
        for i, path in self.files():
            if i != experiences_done:
                path.unlink(missing_ok=True)
                path.with_suffix(".safetensors").unlink(missing_ok=True)
        return sum(stem.with_suffix(s).stat().st_size for s in (".safetensors", ".json"))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def strategy_state(strategy) -> dict:
    """Everything the next experiences of `strategy` read (module docstring), as nested tensors and scalars."""
    model = strategy.model
    state_dict = dict(model.state_dict())
    return {
        "model": state_dict,
        # the buffers a state_dict leaves out: closed-form statistics (ranpac, simplecil)
        "buffers": {n: b for n, b in model.named_buffers() if n not in state_dict},
        "modules": {name: m.checkpoint_state() for name, m in model.named_modules() if hasattr(m, "checkpoint_state")},
        "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
        "optimizer": strategy.optimizer.state_dict(),
        "clock": {k: v for k, v in vars(strategy.clock).items() if isinstance(v, int)},
        "generators": dict(strategy.__dict__.get("_own_generators", {})),
        "plugins": [[type(p).__name__, p.state_dict()] for p in stateful_plugins(strategy)],
        "rng": global_rng_state(),
    }


def restore_strategy(strategy, state: dict, train_stream) -> None:
    """Put `state` (strategy_state's, unpacked) back into a freshly built `strategy` before its next experience. The
    optimizer's state waits for the template's make_optimizer at that experience's start (RestoreOptimizer)."""
    strategy.model.to(strategy.device)  # where train() puts it: a plugin's copy of the model (LwF's teacher) too
    names = [type(p).__name__ for p in stateful_plugins(strategy)]
    saved = [name for name, _ in state["plugins"]]
    if names != saved:
        raise UserError(f"the checkpoint's plugins {saved} are not this run's {names}; remove it or rerun with --force")
    strategy.model.load_state_dict(state["model"], strict=True)
    buffers = dict(strategy.model.named_buffers())
    with torch.no_grad():
        for name, value in state["buffers"].items():
            buffers[name].copy_(value)
    modules = dict(strategy.model.named_modules())
    for name, module_state in state["modules"].items():
        modules[name].load_checkpoint_state(module_state)
    trainable = set(state["trainable"])
    for n, p in strategy.model.named_parameters():
        p.requires_grad_(n in trainable)
    for k, v in state["clock"].items():
        setattr(strategy.clock, k, v)
    strategy.__dict__["_own_generators"] = dict(state["generators"])
    strategy.resume_stream = train_stream
    for plugin, (_, plugin_state) in zip(stateful_plugins(strategy), state["plugins"], strict=True):
        plugin.load_state_dict(plugin_state, strategy)
    set_global_rng_state(state["rng"])
    strategy.plugins.insert(0, RestoreOptimizer(state["optimizer"]))


class RestoreOptimizer(SupervisedPlugin):
    """Loads the saved optimizer state once the template has registered the model's parameters with the optimizer
    (make_optimizer, at the start of the resumed experience); a no-op afterwards."""

    def __init__(self, state: dict):
        super().__init__()
        self.state = state

    def before_training_exp(self, strategy, **kwargs):
        if self.state is not None:
            strategy.optimizer.load_state_dict(self.state)
            self.state = None


def data_identity(provenance: dict) -> dict:
    """The stream's data by its files' sha256 (not where they are): a checkpoint resumes only on the same data."""
    return {part: (info or {}).get("sha256") for part, info in provenance.items() if isinstance(info, dict)}


def without_protocol(missing: list[str], mode: str, say) -> None:
    """Plugins without the state protocol: an error under --checkpoint on, one line (no checkpoints) under auto."""
    what = f"plugin {', '.join(missing)} has no state_dict / load_state_dict (benchmark/runtime/state.py)"
    if mode == "on":
        raise UserError(f"--checkpoint on: {what}; give it the state protocol or pass --checkpoint off")
    say(f"no checkpoints for this run: {what}")


class Resume:
    """One run's side of checkpointing (benchmark/harness/run.py): `find` before the strategy is built (the wandb run
    to continue), `attach` once it is (the state goes back in), `save` after every row of R, `finished` once the
    run folder is written. With checkpointing off, every step is a no-op."""

    def __init__(self, ckpt: RunCheckpoint | None = None, state: dict | None = None, mode: str = "off", say=print,
                 done: int = 0):
        self.ckpt, self.state, self.mode, self.say = ckpt, state, mode, say
        self.log, self.strategy, self.tracker, self.t_start = None, None, None, 0.0
        # the experiences done at each resume of this run, earlier processes' first (summary.json's resumed_after)
        self.resumed_after = [*state.get("resumed_after", []), done] if state else []

    @classmethod
    def find(cls, cfg, meta, folder: Path, force: bool, provenance: dict, say, *, cached: bool, device,
             extra_plugins=(), batch: str = "") -> Resume:
        """The run's checkpointing, and the checkpoint to resume from (if any). `cached`: it trains on cached
        features; `extra_plugins`: plugins a caller adds (each needs the state protocol); `batch`: the id of the
        batch running it: with `force`, a checkpoint that batch wrote (a Ray retry's) is kept, any other removed."""
        if not checkpointing(cfg, meta, cached):
            shutil.rmtree(checkpoint_dir(folder), ignore_errors=True)  # an earlier run's, killed with checkpoints on
            return cls()
        if missing := [type(p).__name__ for p in extra_plugins if not has_state_protocol(p)]:
            without_protocol(missing, cfg.checkpoint, say)
            return cls()
        ckpt = RunCheckpoint(folder, cfg.to_dict() | {"data": data_identity(provenance)}, say,
                             code=code_identity(device), batch=batch)
        restored = ckpt.load()
        if force and ckpt.files() and not (batch and restored and restored.record.get("batch") == batch):
            say(f"--force: checkpoint {ckpt.dir} removed; starting from the beginning")
            ckpt.remove()
            restored = None
        if restored is not None:
            say(f"resuming from {ckpt.dir} after experience {restored.experiences_done - 1}")
        return cls(ckpt, restored.state if restored else None, cfg.checkpoint, say,
                   restored.experiences_done if restored else 0)

    @property
    def wandb_id(self) -> str:
        return self.state["wandb_id"] if self.state else ""

    def attach(self, strategy, train_stream, tracker, t_start: float) -> float:
        """Restore the checkpoint (if any) into the freshly built `strategy`; → the seconds the earlier process(es)
        had run, which the run's total includes."""
        if self.ckpt is None:
            return 0.0
        if missing := unsupported_plugins(strategy):  # a strategy's own plugin without it (find checked the caller's)
            without_protocol(missing, self.mode, self.say)
            self.ckpt = self.state = None
            self.resumed_after = []
            return 0.0
        prior = self.state["elapsed_s"] if self.state else 0.0
        self.strategy, self.tracker, self.t_start = strategy, tracker, t_start - prior
        if self.state is not None:
            try:
                restore_strategy(strategy, self.state["strategy"], train_stream)
                self.log = EvaluationLog(**self.state["log"])
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
                raise UserError(f"the checkpoint in {self.ckpt.dir} does not fit this run ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]}); remove that folder or rerun with --force") from None
        return prior

    def save(self, experience: int, log: EvaluationLog) -> None:
        if self.ckpt is None:
            return
        t0 = time.perf_counter()
        try:
            size = self.ckpt.save(experience + 1, {
                "strategy": strategy_state(self.strategy), "log": dict(vars(log)),
                "elapsed_s": t0 - self.t_start, "wandb_id": self.tracker.info.get("id", ""),
                "resumed_after": self.resumed_after})
        except TypeError as e:  # a caller's plugin whose state is not tensors, numbers and containers of them
            if self.mode == "on":
                raise UserError(f"--checkpoint on: {e}; pass --checkpoint off") from None
            self.say(f"no more checkpoints for this run: {e}")
            self.ckpt.remove()
            self.ckpt = None
            return
        self.say(f"checkpoint after experience {experience}: {size / 2**20:.2f} MiB in {time.perf_counter() - t0:.2f}s")

    def finished(self, keep: bool) -> None:
        if self.ckpt is not None and not keep:
            self.ckpt.remove()
