"""Run configuration: one frozen dataclass, filled from defaults < profile < --config file < flags.

Every field has a concrete default whose type drives its CLI flag (`--batch-size 32`; bools get `--x/--no-x`;
tuples of ints take `128,64`). The chosen stream, backbone and strategy may bring their own config dataclass; their
flags are namespaced by registry name: `--lwf.temperature 2`, `--binary_tasks.train-per-task 500`. A config file or
profile uses the same names with underscores (`"lwf.temperature": 2`); an unknown key is an error, never ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.registry import BACKBONES, STRATEGIES, STREAMS

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class RunConfig:
    stream: str = "binary_tasks"
    strategy: str = "naive"
    seed: int = 0
    backbone: str = "vit_tiny"
    backbone_mode: str = field(default="finetune", metadata={"choices": ("finetune", "frozen", "last-k")})
    last_k: int = 1  # --backbone-mode last-k: how many of the backbone's last blocks train
    backbone_lr: float = 0.0  # Adam lr of the backbone's parameters; 0 = --lr
    backbone_weights: str = ""  # .pth/.safetensors for a pretrained backbone; "" = Hugging Face cache, then hub
    feature_cache: bool = True  # frozen backbone: extract features once, train on the cached arrays
    cache_dir: str = ""  # "" = $XDG_CACHE_HOME/hatswap (~/.cache/hatswap)
    amp: bool = True  # CUDA only: bf16 autocast
    compile: bool = False  # torch.compile the backbone when it runs every step (unmeasured gain; off)
    hidden: tuple[int, ...] = (128,)  # widths of the shared hidden layers between backbone and heads
    dropout: float = 0.1  # after each shared hidden layer
    epochs: int = 2  # per experience (joint: over the merged data)
    batch_size: int = 64
    eval_batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = field(default="adam", metadata={"choices": ("adam", "adamw")})  # adamw: decoupled decay
    lr_schedule: str = field(default="constant", metadata={"choices": ("constant", "cosine")})  # cosine: per epoch
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    data_root: Path = Path("data")
    download: bool = True  # try the dataset's official download when local files are missing
    apt_install: bool = True  # as root, may `apt-get install dataset-fashion-mnist` when all else fails
    out_dir: Path = Path("results")
    wandb: str = field(default="off", metadata={"choices": ("off", "offline", "online")})
    wandb_project: str = ""  # "" = $WANDB_PROJECT, else "hatswap"
    wandb_entity: str = ""  # "" = $WANDB_ENTITY, else your default entity
    stream_args: Any = None  # instance of STREAMS.get(stream).config_cls
    backbone_args: Any = None  # instance of BACKBONES.get(backbone).config_cls
    strategy_args: Any = None  # instance of STRATEGIES.get(strategy).config_cls

    def __post_init__(self):
        checks = {
            "seed": self.seed >= 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "lr": 0 < self.lr < float("inf"),
            "backbone_lr": 0 <= self.backbone_lr < float("inf"),
            "last_k": self.last_k >= 1,
            "weight_decay": self.weight_decay >= 0,
            "dropout": 0 <= self.dropout < 1,
            "threads": self.threads >= 0,
            "hidden": len(self.hidden) >= 1 and all(w >= 1 for w in self.hidden),
        }
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"invalid value for --{name.replace('_', '-')}: {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return flat_config(self)


def flat_config(cfg) -> dict:
    """Flat, JSON-ready view of a config dataclass with namespaced entry knobs (`<entry>.<knob>` for every
    `<kind>_args` field, named by the `<kind>` field's value): the same keys a --config file takes."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name.endswith("_args"):
            prefix = getattr(cfg, f.name[: -len("_args")])
            out |= {f"{prefix}.{k}": _jsonable(x) for k, x in (dataclasses.asdict(v) if v else {}).items()}
        else:
            out[f.name] = _jsonable(v)
    return out


def _jsonable(v):
    return str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # `--seed` must never be taken for `--seeds`

    def error(self, message):  # one line naming the fix, not argparse's usage block
        raise UserError(f"{message} (see `hatswap {self.prog.split()[-1]} --help`)")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_fields(parser, cls, prefix: str = "") -> set[str]:
    """One flag per dataclass field; returns the argparse dests it created."""
    dests = set()
    for f in fields(cls):
        if f.name.endswith("_args"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        dest = prefix + f.name
        flags = {f"--{prefix}{f.name.replace('_', '-')}", f"--{dest}"}
        kw: dict = {"dest": dest, "default": default, "help": f"(default: {_jsonable(default)})"}
        if isinstance(default, bool):
            parser.add_argument(*sorted(flags), action=argparse.BooleanOptionalAction, **kw)
        else:
            kw["type"] = _int_tuple if isinstance(default, tuple) else type(default)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            parser.add_argument(*sorted(flags), **kw)
        dests.add(dest)
    return dests


def load_profile(name: str) -> dict:
    path = PROFILE_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.json")))
        raise UserError(f"unknown profile {name!r}; known: {known}")
    return json.loads(path.read_text())


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a JSON object of flag names to values")
    return data


def build_parser(prog: str = "hatswap run") -> _Parser:
    parser = _Parser(prog=prog, description="Train one stream x strategy x seed and write its results folder.")
    parser.add_argument("--profile", help="a profile from benchmark/profiles/ supplies the defaults")
    parser.add_argument("--config", type=Path, help="JSON file of flag names to values (overrides the profile)")
    parser.add_argument("--force", action="store_true", help="redo a run whose results already exist")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_config(argv=None) -> tuple[RunConfig, argparse.Namespace]:
    parser = build_parser()
    dests = add_fields(parser, RunConfig)
    ns, _ = parser.parse_known_args(argv)  # stage 1: which profile/file, stream, backbone, strategy?
    profile = load_profile(ns.profile) if ns.profile else {"config": {}}
    if profile.get("kind") == "mtl":
        raise UserError(f"profile {ns.profile!r} is a multi-task profile: run it with `hatswap batch --profile "
                        f"{ns.profile}`, or one experiment with `hatswap mtl`")
    file_defaults = profile["config"]
    if ns.config:
        file_defaults = file_defaults | _read_json(ns.config)
    file_defaults = {k.replace("-", "_"): v for k, v in file_defaults.items()}
    parser.set_defaults(**file_defaults)
    ns, _ = parser.parse_known_args(argv)
    entries = {"stream": STREAMS.get(ns.stream), "backbone": BACKBONES.get(ns.backbone),
               "strategy": STRATEGIES.get(ns.strategy)}
    for e in entries.values():  # stage 2: their own knobs, namespaced by registry name
        if e.config_cls:
            dests |= add_fields(parser.add_argument_group(e.name), e.config_cls, prefix=f"{e.name}.")
    if unknown := {k for k in set(file_defaults) - dests if not _knob_of_other_entry(k)}:
        raise UserError(f"unknown config keys: {sorted(unknown)}; known: {sorted(dests)}")
    parser.set_defaults(**{k: _coerce(parser, k, v) for k, v in file_defaults.items()})
    ns = parser.parse_args(argv)  # a misspelt flag is an error, never ignored
    sub = {f"{kind}_args": _pick(e, ns) for kind, e in entries.items()}
    cfg = RunConfig(**{f.name: getattr(ns, f.name) for f in fields(RunConfig) if not f.name.endswith("_args")}, **sub)
    return cfg, ns


def _knob_of_other_entry(key: str) -> bool:
    """`replay.mem_size` in a profile shared by all strategies is valid (and unused) while running lwf."""
    name, _, knob = key.partition(".")
    for reg in (STREAMS, BACKBONES, STRATEGIES):
        if name in reg.names():
            cls = reg.get(name).config_cls
            return cls is not None and knob in {f.name for f in fields(cls)}
    return False


def _coerce(parser, dest: str, value):
    """File values get the same types as flags (a JSON list for a tuple, a string for a Path)."""
    for action in parser._actions:
        if action.dest == dest and action.type is not None and not isinstance(action.default, bool):
            if isinstance(value, list):
                value = ",".join(map(str, value))
            try:
                return action.type(value)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                raise UserError(f"bad value for {dest!r} in config: {value!r} ({e})") from None
    return value


def _pick(entry, ns):
    if entry.config_cls is None:
        return None
    prefix = f"{entry.name}."
    return entry.config_cls(**{f.name: getattr(ns, prefix + f.name) for f in fields(entry.config_cls)})
