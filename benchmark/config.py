"""Run configuration: one frozen dataclass, filled from defaults < profile < --config file < flags.

Every field has a concrete default whose type drives its CLI flag (`--batch-size 32`; bools get `--x/--no-x`;
tuples of ints take `128,64`). The chosen stream, backbone and strategy may bring their own config dataclass; their
flags are namespaced by registry name: `--lwf.temperature 2`, `--binary_tasks.train-per-task 500`. A config file or
profile uses the same names with underscores (`"lwf.temperature": 2`); an unknown key is an error, never ignored,
and every value goes through its flag's own parsing (type, choices; booleans are JSON true / false), so an error
names the file and the key. Float flags reject NaN and ±inf; `--help` lists the chosen entries' flags too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmark.errors import UserError, read_json_object
from benchmark.registry import BACKBONES, DEFAULT_MODEL, MODELS, STRATEGIES, STREAMS, CompositeArgs

PROFILE_DIR = Path(__file__).parent / "profiles"
# The continual run's entries: `<kind>` field → its registry, whose entry's config fills `<kind>_args` (mtl: its own)
ENTRY_FIELDS = {"stream": STREAMS, "backbone": BACKBONES, "strategy": STRATEGIES, "architecture": MODELS}


@dataclass(frozen=True)
class RuntimeConfig:
    """What every kind of run shares: its seed, where it runs, where its data and results are, and the optimisation
    budget. RunConfig and MTLConfig extend it through TrackedConfig (wandb), PretrainConfig directly (a subclass may
    give a field another default); its fields come first in their config.json."""

    seed: int = 0
    epochs: int = 2  # continual: per experience (joint: over the merged data); MTLConfig says its own
    batch_size: int = 64
    eval_batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    data_root: Path = Path("data")
    download: bool = True  # try the dataset's official download when local files are missing
    apt_install: bool = True  # as root, may `apt-get install dataset-fashion-mnist` when all else fails
    out_dir: Path = Path("results")

    def __post_init__(self):
        self.check({
            "seed": self.seed >= 0, "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1, "eval_batch_size": self.eval_batch_size >= 1,
            "lr": 0 < self.lr < float("inf"),
            "weight_decay": self.weight_decay >= 0,
            "threads": self.threads >= 0,
        })

    def check(self, checks: dict[str, bool]) -> None:
        """Range checks, field name → whether its value is valid: the first invalid one is a UserError naming its
        flag (a subclass's __post_init__ passes its own fields' checks)."""
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"invalid value for --{name.replace('_', '-')}: {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return flat_config(self)


@dataclass(frozen=True)
class TrackedConfig(RuntimeConfig):
    """A run that logs to wandb (continual and multi-task runs; benchmark/outputs/tracking.py)."""

    wandb: str = field(default="off", metadata={"choices": ("off", "offline", "online")})
    wandb_project: str = ""  # "" = $WANDB_PROJECT, else "hatswap"
    wandb_entity: str = ""  # "" = $WANDB_ENTITY, else your default entity
    wandb_group: str = ""  # "" = the stream (continual) or "mtl"; a tuning's trials: tune-<profile>-<strategy>
    # what the model computes in; float64: the same numbers on any CPU kind to ~1e-12 (golden tests), --amp off
    dtype: str = field(default="float32", metadata={"choices": ("float32", "float64")})


@dataclass(frozen=True)
class RunConfig(TrackedConfig):
    stream: str = "binary_tasks"
    # task-il: a head per task, task label given; class-il: one head over every class; domain-il: one shared head
    scenario: str = field(default="task-il", metadata={"choices": ("task-il", "class-il", "domain-il")})
    strategy: str = "naive"
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
    optimizer: str = field(default="adam", metadata={"choices": ("adam", "adamw")})  # adamw: decoupled decay
    # per epoch (harness_plugins.py): cosine, step restart per experience; cosine-stream spans the stream's epochs
    lr_schedule: str = field(default="constant", metadata={"choices": ("constant", "cosine", "cosine-stream", "step")})
    lr_step_size: int = 3  # --lr-schedule step: epochs between decays (torch's StepLR step_size)
    lr_gamma: float = 0.1  # --lr-schedule step: the lr's factor at each decay
    fresh_optimizer: bool = False  # every experience starts from a fresh optimizer state (Adam's moments and step)
    # class-balanced: each epoch draws every task's N samples with replacement, weights 1/(its class's count)
    sampler: str = field(default="shuffle", metadata={"choices": ("shuffle", "class-balanced")})
    published: str = ""  # benchmark/published/<name>.json: published numbers the report shows beside these runs'
    save_model: bool = False  # write the final model: model.safetensors, model.json (benchmark/harness/model_export.py)
    # a checkpoint after every experience, resumed by a rerun (benchmark/harness/checkpoint.py); auto: on when the
    # backbone runs at every step (fine-tuned, last-k, or no feature cache), off on cached features and for joint
    checkpoint: str = field(default="auto", metadata={"choices": ("auto", "on", "off")})
    keep_checkpoints: bool = False  # keep the last checkpoint once the run folder is written (removed by default)
    tuned_from: str = ""  # the tuned-arguments record (benchmark/tuned/; --tuned: the profile's) these knobs are from
    stream_args: Any = None  # instance of STREAMS.get(stream).config_cls
    backbone_args: Any = None  # instance of BACKBONES.get(backbone).config_cls
    strategy_args: Any = None  # instance of STRATEGIES.get(strategy).config_cls
    architecture: str = DEFAULT_MODEL  # the model (MODELS): the Hat Swap network, or a multi-task one (mmoe: --hidden)
    architecture_args: Any = None  # instance of MODELS.get(architecture).config_cls

    def __post_init__(self):
        super().__post_init__()
        self.check({
            "backbone_lr": 0 <= self.backbone_lr < float("inf"),
            "last_k": self.last_k >= 1, "dropout": 0 <= self.dropout < 1,
            "hidden": all(w >= 1 for w in self.hidden),  # empty: the heads read the backbone's features
            "lr_step_size": self.lr_step_size >= 1,
            "lr_gamma": 0 < self.lr_gamma < float("inf"),
        })
        if self.tuned_from:  # as config.json names it: relative to the repository when inside it
            from benchmark.tuning.record import canonical

            object.__setattr__(self, "tuned_from", canonical(self.tuned_from))
        if self.published:
            from benchmark.outputs.published import load_published

            load_published(self.published)
        STRATEGIES.get(self.strategy).meta.refuse_options(self)  # and what the architecture cannot carry (MODELS)


def flat_config(cfg) -> dict:
    """Flat, JSON-ready view of a config dataclass with namespaced entry knobs (`<entry>.<knob>` for every
    `<kind>_args` field, named by the `<kind>` field's value): the same keys a --config file takes."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name.endswith("_args"):
            named = v.parts if isinstance(v, CompositeArgs) else [(getattr(cfg, f.name[: -len("_args")]), v)]
            for prefix, part in named:
                out |= {f"{prefix}.{k}": jsonable(x) for k, x in (dataclasses.asdict(part) if part else {}).items()}
        else:
            out[f.name] = jsonable(v)
    return out


def jsonable(v):
    return str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v


class CommandParser(argparse.ArgumentParser):
    """The parser of every `hatswap` command: no abbreviated flags, and an error is one line naming the fix."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # `--seed` must never be taken for `--seeds`

    def error(self, message):  # one line naming the fix, not argparse's usage block
        raise UserError(f"{message} (see `hatswap {self.prog.split()[-1]} --help`)")


def _float(text: str) -> float:
    """Every float flag (and config value): a finite number; NaN passes every `x > 0` check and inf every `x >= 0`
    one, and either fails the run later with a message about the loss, not the flag."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r} (NaN is not a number)")
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r} (a finite number is needed)")
    return value


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
        kw: dict = {"dest": dest, "default": default, "help": f"(default: {jsonable(default)})"}
        if isinstance(default, bool):
            parser.add_argument(*sorted(flags), action=argparse.BooleanOptionalAction, **kw)
        else:
            kw["type"] = _int_tuple if isinstance(default, tuple) else _float if isinstance(default, float) \
                else type(default)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            parser.add_argument(*sorted(flags), **kw)
        dests.add(dest)
    return dests


def profile_path(name: str) -> Path:
    return PROFILE_DIR / f"{name}.json"


def load_profile(name: str) -> dict:
    path = profile_path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.json")))
        raise UserError(f"unknown profile {name!r}; known: {known}")
    return read_json_object(path, f"profile {name} ({path})")


def read_config_file(path: Path) -> dict:
    """A --config file: a JSON object of flag names to values; anything else is one line naming the file."""
    return read_json_object(Path(path), f"config file {path}", " of flag names to values")


def build_parser(prog: str = "hatswap run") -> CommandParser:
    parser = CommandParser(prog=prog, description="Train one stream x strategy x seed and write its results folder.",
                           epilog="The flags of the chosen --stream, --backbone and --strategy are listed last; "
                           "`hatswap list --flags NAME` lists any entry's.")
    parser.add_argument("--profile", help="a profile from benchmark/profiles/ supplies the defaults")
    parser.add_argument("--config", type=Path, help="JSON file of flag names to values (overrides the profile)")
    parser.add_argument("--force", action="store_true", help="redo a run whose results already exist")
    parser.add_argument("--tuned", action="store_true", help="use the strategy's tuned arguments for this profile "
                        "(benchmark/tuned/<profile>/<strategy>.json, made by `hatswap tune`)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_config(argv=None) -> tuple[RunConfig, argparse.Namespace]:
    from benchmark.tuning.record import tuned_layers

    argv = list(sys.argv[1:] if argv is None else argv)

    def layers(ns) -> list[tuple[dict, str]]:  # defaults < profile < tuned arguments < --config file < flags
        profile = load_profile(ns.profile) if ns.profile else {"config": {}}
        if profile.get("kind") == "mtl":
            raise UserError(f"profile {ns.profile!r} is a multi-task profile: run it with `hatswap batch --profile "
                            f"{ns.profile}`, or one experiment with `hatswap mtl`")
        where = f"profile {ns.profile} ({profile_path(str(ns.profile))})"
        out = [(profile.get("config", {}), where)]
        # a profile's "strategy_config": {strategy: {key: value}}, over its "config" for that strategy's runs only
        # (the `ptm` profile fine-tunes slca's backbone and keeps the others' frozen)
        if own := profile.get("strategy_config", {}).get(ns.strategy):
            out.append((own, f"{where}, \"strategy_config\" of {ns.strategy}"))
        out += tuned_layers(ns, profile, argv)
        return out + [(read_config_file(ns.config), str(ns.config))] if ns.config else out

    return parse_with_entries(build_parser(), RunConfig, ENTRY_FIELDS, argv, layers)


def parse_with_entries(parser: CommandParser, cls, entry_fields: dict, argv, layers) -> tuple[Any, argparse.Namespace]:
    """argv → (cls instance, namespace): dataclass defaults < file layers < flags, in two stages.

    entry_fields: `<kind>` field → Registry; each chosen entry's config dataclass adds its flags, namespaced by its
    name (`--lwf.temperature`), and fills the `<kind>_args` field. layers(stage-1 namespace) → [(values, where)],
    lowest first: a profile's or config file's keys (entry names as registered, knobs with `-` or `_`), applied as
    the flags' defaults through the flags' own parsing and named by `where` in errors. An unknown key or flag is an
    error; one that is a knob of an entry not chosen is allowed in a file (a profile shared by all strategies) and
    named as such on the command line. `--help` waits for stage 2, so that it lists the chosen entries' flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    staged = [a for a in argv if a not in ("-h", "--help")]
    dests = add_fields(parser, cls)
    ns, _ = parser.parse_known_args(staged)  # stage 1: which files and entries?
    values, origin = {}, {}
    for layer, where in layers(ns):
        layer = {underscored_key(k, entry_fields): v for k, v in layer.items()}
        values, origin = values | layer, origin | dict.fromkeys(layer, where)
    _set_file_defaults(parser, values, dests, origin)
    ns, _ = parser.parse_known_args(staged)
    chosen = {kind: _chosen_entry(registry, kind, getattr(ns, kind), origin, argv)
              for kind, registry in entry_fields.items()}
    for kind, e in chosen.items():  # stage 2: their own knobs, namespaced by registry name (a composite: each part's)
        for part in e.parts or (e,):
            if part.config_cls:
                group = parser.add_argument_group(f"{entry_fields[kind].kind} {part.name}")
                dests |= add_fields(group, part.config_cls, prefix=f"{part.name}.")
    if unknown := {k for k in set(values) - dests if not knob_owner(k, entry_fields)}:
        raise UserError(f"unknown config keys: {sorted(unknown)} (in {', '.join(sorted({origin[k] for k in unknown}))})"
                        f"; known: {sorted(dests)}")
    _set_file_defaults(parser, values, dests, origin)
    _, extra = parser.parse_known_args(staged)
    for arg in extra:  # `--lwf.alpha 1` while running naive: say whose knob it is, not just "unrecognized"
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and (owner := knob_owner(flag[2:], entry_fields)):
            kind, name = owner
            raise UserError(f"{flag} belongs to {kind} {name}, not {getattr(ns, kind)} (pass --{kind} {name}, or "
                            f"drop the flag)")
    ns = parser.parse_args(argv)  # a misspelt flag is an error, never ignored
    try:  # the dataclasses' own range checks
        sub = {f"{kind}_args": _pick(e, ns) for kind, e in chosen.items()}
        cfg = cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if not f.name.endswith("_args")}, **sub)
    except UserError as e:
        if where := _set_by_file(e, origin, argv):
            raise UserError(f"{e} ({where})") from e
        raise
    return cfg, ns


def _chosen_entry(registry, kind: str, name: str, origin: dict, argv: list[str]):
    """registry.get(name); an unknown name that a profile or config file gave names that file and key, not the
    `--<kind>` flag."""
    try:
        return registry.get(name)
    except UserError as e:
        if kind in origin and not {a.split("=", 1)[0] for a in argv} & {_flag(kind), f"--{kind}"}:
            raise UserError(f"{e} (key {kind!r} of {origin[kind]})") from None
        raise


def _flag(key: str) -> str:
    name, dot, knob = key.rpartition(".")
    return f"--{name}{dot}{knob.replace('_', '-')}"


def _set_by_file(e: UserError, origin: dict, argv) -> str:
    """A range check that names `--epochs` failed on a value a file or profile set, not a flag: which file and key."""
    given = {a.split("=", 1)[0] for a in argv or []}
    keys = [k for k in origin if re.search(re.escape(_flag(k)) + r"(?![\w.-])", str(e))
            and not given & {_flag(k), f"--{k}"}]
    return f"key {', '.join(f'{k!r} of {origin[k]}' for k in keys)}" if keys else ""


def underscored_key(key: str, entry_fields: dict | None = None) -> str:
    """A file's key as its flag's dest: `batch-size` → `batch_size`, `mmoe.num-experts` → `mmoe.num_experts`; the
    entry name keeps its registered form (`shared-bottom.x` stays `shared-bottom.x`), and one written with `-` for a
    registered `_` (`binary-tasks.x`, as its flag reads) is that entry's."""
    name, dot, knob = key.rpartition(".")
    if name and entry_fields:
        known = {n for registry in entry_fields.values() for n in registry.names()}
        if name not in known and name.replace("-", "_") in known:
            name = name.replace("-", "_")
    return name + dot + knob.replace("-", "_")


def _set_file_defaults(parser, values: dict, dests: set[str], origin: dict) -> None:
    """A profile's or config file's values become the flags' defaults, through the flags' own parsing."""
    parser.set_defaults(**{k: _coerce(parser, k, v, origin.get(k, "config")) for k, v in values.items()
                           if k in dests})


def knob_owner(key: str, entry_fields: dict | None = None) -> tuple[str, str] | None:
    """(kind, entry) whose knob `key` is (`replay.mem_size` or `replay.mem-size` → ('strategy', 'replay')), among
    entry_fields (`<kind>` field → Registry; default: the continual run's): such a key in a profile shared by all
    strategies is valid (and unused) while running lwf."""
    name, _, knob = key.partition(".")
    for kind, reg in (entry_fields or ENTRY_FIELDS).items():
        if name in reg.names():
            cls = reg.get(name).config_cls
            return (kind, name) if cls and knob.replace("-", "_") in {f.name for f in fields(cls)} else None
    return None


def _coerce(parser, dest: str, value, origin: str = "config"):
    """A file's JSON value → exactly what its flag would give: the value as a flag's text (a JSON list as `16,32`)
    through the flag's own type function and choice check; a boolean field takes only JSON true / false."""
    action = next((a for a in parser._actions if a.dest == dest), None)
    if action is None:
        return value

    def bad(why: str) -> UserError:
        return UserError(f"bad value for {dest!r} in {origin}: {why}")

    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise bad(f"expected true or false, got {json.dumps(value)}")
        return value
    if isinstance(value, list):  # what a comma-separated flag takes: `--hidden 16,32`, `--static.weights 1,0.5`
        value = ",".join(map(str, value))
    if isinstance(value, bool | dict) or value is None:
        raise bad(f"expected a value as its flag takes it, got {json.dumps(value)}")
    try:
        return parser._get_values(action, [str(value)])  # argparse's own conversion and choice check
    except argparse.ArgumentError as e:
        raise bad(e.message) from None  # argparse's message is the whole story


def _pick(entry, ns):
    if entry.parts:
        return CompositeArgs(tuple((part.name, _pick(part, ns)) for part in entry.parts))
    if entry.config_cls is None:
        return None
    prefix = f"{entry.name}."
    return entry.config_cls(**{f.name: getattr(ns, prefix + f.name) for f in fields(entry.config_cls)})
