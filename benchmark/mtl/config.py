"""`hatswap mtl` configuration: one frozen dataclass, defaults < --config file (or a profile experiment) < flags.

The chosen task set, architecture, weighting, schedule and backbone bring their own knobs, namespaced by registry
name like `hatswap run`'s: `--static.weights 1,0.5,1`, `--curriculum.starts 0,10,20`, `--gradnorm.alpha 1.5`,
`--mtl_tasks.train-size 3000`, `--small_cnn.channels 16,32`. The toolkit document's `--experts` (and a profile's or
config.json's "experts") is MMoE's `--mmoe.num-experts`, mapped by benchmark/mtl/keywords.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import inf
from pathlib import Path
from typing import Any

from benchmark.config import CommandParser, TrackedConfig, parse_with_entries, read_config_file
from benchmark.models.layers import ACTIVATIONS, DROPOUT_AT, POOLING
from benchmark.mtl.gradients import parse_relations_text
from benchmark.mtl.keywords import config_keys, to_config_keys, to_knobs
from benchmark.mtl.options import task_values
from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES, TASK_SETS, WEIGHTINGS
from benchmark.registry import BACKBONES

ENTRY_FIELDS = {"task_set": TASK_SETS, "architecture": ARCHITECTURES, "weighting": WEIGHTINGS,
                "schedule": SCHEDULES, "backbone": BACKBONES}


@dataclass(frozen=True)
class MTLConfig(TrackedConfig):
    """The runtime fields (seed, epochs, batch sizes, lr, weight decay, device, threads, data_root, download,
    apt_install, out_dir; benchmark.config.RuntimeConfig), wandb (TrackedConfig) and the multi-task run's own; the
    optimiser is Adam."""

    name: str = ""  # experiment name (results folder); "" = <architecture>-<weighting>-<schedule>
    task_set: str = "mtl_tasks"
    tasks: str = "3"  # a count (the task set's first N) or comma-separated task names
    architecture: str = "shared-bottom"
    weighting: str = "equal"
    schedule: str = "joint"
    backbone: str = "small_cnn"
    # how the backbone's feature map becomes the trunk's input: mean over positions, or flattened (layout kept)
    pooling: str = field(default="mean", metadata={"choices": POOLING})
    # number of shared hidden layers (per column for cross-stitch / progressive); 0 (shared-bottom): none, the
    # backbone is the shared network and the heads read its pooled map (the multi-task experiments' conv trunk)
    shared_layers: int = 2
    shared_width: int = 64  # width of each shared hidden layer
    task_layers: tuple[int, ...] = (32,)  # hidden widths of each task head before its output layer
    dropout: float = 0.0
    dropout_at: str = field(default="each", metadata={"choices": DROPOUT_AT})  # none | single | each
    activation: str = field(default="relu", metadata={"choices": tuple(ACTIVATIONS)})  # after every hidden layer
    grad_clip: float = 0.0  # max global L2 norm of all gradients before each step (clip_grad_norm_); 0 = off
    task_lr: str = ""  # lr of a task's head: classes=0.01,coarse=0.001; other heads, shared parameters: --lr
    # declared task relations: classes~coarse=positive,coarse~random=negative (benchmark/mtl/gradients.py)
    task_relations: str = ""
    epochs: int = 3  # joint/alternating/curriculum: in total; sequential: per task
    task_set_args: Any = None
    architecture_args: Any = None
    weighting_args: Any = None
    schedule_args: Any = None
    backbone_args: Any = None

    def __post_init__(self):
        super().__post_init__()
        self.check({"dropout": 0 <= self.dropout < 1, "shared_layers": self.shared_layers >= 0,
                    "shared_width": self.shared_width >= 1,
                    "task_layers": all(w >= 1 for w in self.task_layers), "grad_clip": 0 <= self.grad_clip < inf,
                    "name": "/" not in self.name and not self.name.startswith(".")})
        task_values(self.task_lr, "--task-lr")  # its syntax here; its task names when the model is built
        parse_relations_text(self.task_relations)  # likewise

    def to_dict(self) -> dict:
        """The flat config, with an entry knob that the toolkit document names by a run-level key (MMoE's
        `num_experts`: `experts`) under that key, as config.json has always held it (benchmark/mtl/keywords.py)."""
        return to_config_keys(super().to_dict())

    @property
    def run_name(self) -> str:
        return self.name or f"{self.architecture}-{self.weighting}-{self.schedule}"


def parse_mtl_config(argv=None, defaults: dict | None = None, origin: str = "the profile") -> tuple[MTLConfig, Any]:
    """argv: `hatswap mtl` flags; defaults: a profile's config merged with one experiment (lower than flags), named
    `origin` in errors (a --config file's keys are named by the file's path). Parsed as `hatswap run`'s flags are
    (benchmark.config.parse_with_entries)."""
    parser = CommandParser(prog="hatswap mtl", description="Train one multi-task experiment (architecture x loss "
                           "weighting x schedule) and write its results folder.")
    parser.add_argument("--config", type=Path, help="JSON file of flag names to values")
    parser.add_argument("--force", action="store_true", help="redo an experiment whose results exist")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")

    run_level = config_keys()  # the toolkit's run-level keys of entry knobs: `--experts` = `--mmoe.num-experts`
    for key, (knob, kw) in run_level.items():
        parser.add_argument(f"--{key}", type=type(kw.field.default), default=None,
                            help=f"= --{knob.replace('_', '-')} (the multi-task toolkit's flag; unused by the others)")

    def layers(ns) -> list[tuple[dict, str]]:
        out = [(to_knobs(defaults or {}), origin)]
        out += [(to_knobs(read_config_file(ns.config)), str(ns.config))] if ns.config else []
        flags = {key: getattr(ns, key) for key in run_level if getattr(ns, key) is not None}
        return out + [(to_knobs(flags), f"the --{'/--'.join(flags)} flag")] if flags else out

    return parse_with_entries(parser, MTLConfig, ENTRY_FIELDS, argv, layers)
