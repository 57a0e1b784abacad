"""`hatswap mtl` configuration: one frozen dataclass, defaults < --config file (or a profile experiment) < flags.

The chosen task set, architecture, weighting, schedule and backbone bring their own knobs, namespaced by registry
name like `hatswap run`'s: `--static.weights 1,0.5,1`, `--curriculum.starts 0,10,20`, `--gradnorm.alpha 1.5`,
`--mtl_tasks.train-size 3000`, `--small_cnn.channels 16,32`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmark.config import _coerce, _Parser, _read_json, add_fields, flat_config
from benchmark.errors import UserError
from benchmark.mtl.layers import DROPOUT_AT, POOLING
from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES, TASK_SETS, WEIGHTINGS
from benchmark.registry import BACKBONES

ENTRY_FIELDS = {"task_set": TASK_SETS, "architecture": ARCHITECTURES, "weighting": WEIGHTINGS,
                "schedule": SCHEDULES, "backbone": BACKBONES}


@dataclass(frozen=True)
class MTLConfig:
    name: str = ""  # experiment name (results folder); "" = <architecture>-<weighting>-<schedule>
    task_set: str = "mtl_tasks"
    tasks: str = "3"  # a count (the task set's first N) or comma-separated task names
    architecture: str = "shared-bottom"
    weighting: str = "equal"
    schedule: str = "joint"
    backbone: str = "small_cnn"
    # how the backbone's feature map becomes the trunk's input: mean over positions, or flattened (layout kept)
    pooling: str = field(default="mean", metadata={"choices": POOLING})
    shared_layers: int = 2  # number of shared hidden layers (per column for cross-stitch / progressive)
    shared_width: int = 64  # width of each shared hidden layer
    task_layers: tuple[int, ...] = (32,)  # hidden widths of each task head before its output layer
    experts: int = 4  # MMoE's number of experts
    dropout: float = 0.0
    dropout_at: str = field(default="each", metadata={"choices": DROPOUT_AT})  # seed 003: none | single | each
    epochs: int = 3  # joint/alternating/curriculum: in total; sequential: per task
    batch_size: int = 64
    eval_batch_size: int = 512
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    seed: int = 0
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    threads: int = 0
    data_root: Path = Path("data")
    download: bool = True
    apt_install: bool = True
    out_dir: Path = Path("results")
    task_set_args: Any = None
    architecture_args: Any = None
    weighting_args: Any = None
    schedule_args: Any = None
    backbone_args: Any = None

    def __post_init__(self):
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "seed": self.seed >= 0,
                  "eval_batch_size": self.eval_batch_size >= 1, "lr": 0 < self.lr < float("inf"),
                  "weight_decay": self.weight_decay >= 0, "dropout": 0 <= self.dropout < 1,
                  "shared_layers": self.shared_layers >= 1, "shared_width": self.shared_width >= 1,
                  "experts": self.experts >= 1, "threads": self.threads >= 0,
                  "task_layers": all(w >= 1 for w in self.task_layers),
                  "name": "/" not in self.name and not self.name.startswith(".")}
        for key, ok in checks.items():
            if not ok:
                raise UserError(f"invalid value for --{key.replace('_', '-')}: {getattr(self, key)!r}")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.architecture}-{self.weighting}-{self.schedule}"

    def to_dict(self) -> dict:
        return flat_config(self)


def _knob_of_other_entry(key: str) -> bool:
    name, _, knob = key.partition(".")
    for reg in ENTRY_FIELDS.values():
        if name in reg.names():
            cls = reg.get(name).config_cls
            return cls is not None and knob in {f.name for f in fields(cls)}
    return False


def _underscored_knob(key: str) -> str:
    """`shared-layers` → `shared_layers`, `mmoe.num-experts` → `mmoe.num_experts` (the registry name keeps its form)."""
    name, dot, knob = key.rpartition(".")
    return name + dot + knob.replace("-", "_")


def parse_mtl_config(argv=None, defaults: dict | None = None, origin: str = "the profile") -> tuple[MTLConfig, Any]:
    """argv: `hatswap mtl` flags; defaults: a profile's config merged with one experiment (lower than flags), named
    `origin` in errors (a --config file's keys are named by the file's path)."""
    parser = _Parser(prog="hatswap mtl", description="Train one multi-task experiment (architecture x loss "
                     "weighting x schedule) and write its results folder.")
    parser.add_argument("--config", type=Path, help="JSON file of flag names to values")
    parser.add_argument("--force", action="store_true", help="redo an experiment whose results exist")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    dests = add_fields(parser, MTLConfig)
    ns, _ = parser.parse_known_args(argv)
    file_defaults, where = dict(defaults or {}), dict.fromkeys(defaults or {}, origin)
    if ns.config:
        from_file = _read_json(ns.config)
        file_defaults, where = file_defaults | from_file, where | dict.fromkeys(from_file, str(ns.config))
    file_defaults, where = ({_underscored_knob(k): v for k, v in d.items()} for d in (file_defaults, where))
    parser.set_defaults(**{k: _coerce(parser, k, v, where[k]) for k, v in file_defaults.items() if k in dests})
    ns, _ = parser.parse_known_args(argv)
    entries = {kind: reg.get(getattr(ns, kind)) for kind, reg in ENTRY_FIELDS.items()}
    for e in entries.values():  # stage 2: the chosen entries' own knobs, namespaced by registry name
        if e.config_cls:
            dests |= add_fields(parser.add_argument_group(e.name), e.config_cls, prefix=f"{e.name}.")
    if unknown := {k for k in set(file_defaults) - dests if not _knob_of_other_entry(k)}:
        raise UserError(f"unknown config keys: {sorted(unknown)} (in {', '.join(sorted({where[k] for k in unknown}))})"
                        f"; known: {sorted(dests)}")
    parser.set_defaults(**{k: _coerce(parser, k, v, where[k]) for k, v in file_defaults.items() if k in dests})
    ns = parser.parse_args(argv)
    sub = {}
    for kind, e in entries.items():
        cls = e.config_cls
        sub[f"{kind}_args"] = cls(**{f.name: getattr(ns, f"{e.name}.{f.name}") for f in fields(cls)}) if cls else None
    cfg = MTLConfig(**{f.name: getattr(ns, f.name) for f in fields(MTLConfig) if not f.name.endswith("_args")},
                    **sub)
    return cfg, ns
