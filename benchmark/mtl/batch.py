"""`hatswap batch --profile mtl`: every experiment × seed of an MTL profile (`"kind": "mtl"` in its JSON).

A profile: {"kind": "mtl", "seeds": [...], "config": {shared flags}, "experiments": [{"name": ..., "group": ...,
["seeds": [...] (instead of the profile's),] <flags>}, ...]}. The single-task baselines for Δm are derived, not
listed: for every multi-task experiment, each of its tasks and seeds, one run of the same trunk
(`transfer.trunk_key`) on that task alone, with equal weighting, the joint schedule and the profile's shared config
for everything else (its budget), deduplicated across experiments and named
`stl-<task>-<architecture>[-<what differs from the profile's trunk>]`; a listed single-task experiment with equal
weighting and the joint schedule serves instead when its trunk matches; `"baselines": false` in the profile derives
none (a reading that needs no Δm: the `mtl-conv` profile compares losses between its own experiments). The
experiments run through the core's batch runner (benchmark/grid/batch.py, grid kind `mtl`, registered here):
completed experiments (same config) are skipped, so a rerun resumes; a failed one is listed and the batch goes on;
at the end the report is rebuilt (results/mtl/summary.{md,csv}, val_curves.png; groups.json keeps the profile's
groups and order for `hatswap report`) and failures exit 1. With --wandb offline/online, a summary run for the
batch: the leaderboard and the Pareto front (`_wandb_summary`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

from benchmark.config import jsonable
from benchmark.errors import UserError
from benchmark.grid.batch import GridKind, register_grid_kind, run_grid
from benchmark.mtl.config import ENTRY_FIELDS as MTL_ENTRIES
from benchmark.mtl.config import MTLConfig, parse_mtl_config
from benchmark.mtl.keywords import config_keys
from benchmark.mtl.registries import TASK_SETS
from benchmark.mtl.task_sets.mtl_data import select_names
from benchmark.mtl.transfer import ENTRY_FIELDS, is_baseline, trunk_config, trunk_flags, trunk_key
from benchmark.outputs.results import atomic_write

META_KEYS = ("group",)  # experiment keys that describe, not configure
BASELINE_GROUP = "single-task baselines (stl: one per trunk × task, equal weighting, joint)"


def task_names(cfg: MTLConfig) -> list[str]:
    entry = TASK_SETS.get(cfg.task_set)
    if not entry.meta.task_names:
        raise UserError(f"task set {cfg.task_set!r} declares no task_names; the batch needs them to plan baselines")
    return select_names(list(entry.meta.task_names), cfg.tasks)


def _knob_default(trunk: dict, key: str):
    """The default of an entry's own knob (`cross-stitch.alpha_same`), as a flat config holds it; None otherwise."""
    entry_name, _, knob = key.partition(".")
    for kind in ENTRY_FIELDS:
        if knob and trunk.get(kind) == entry_name and (cls := MTL_ENTRIES[kind].get(entry_name).config_cls):
            return jsonable(getattr(cls(), knob))
    return None


def baseline_name(task: str, trunk: dict, reference: dict) -> str:
    """stl-<task>-<architecture>, then a short token per trunk setting that differs from the profile's own."""
    diff = {k: v for k, v in trunk.items() if k != "architecture" and v is not None and
            v != reference.get(k, _knob_default(trunk, k))}
    tokens = []
    if "shared_layers" in diff or "shared_width" in diff:
        tokens.append(f"{trunk['shared_layers']}x{trunk['shared_width']}")
    if "dropout" in diff or "dropout_at" in diff:
        tokens.append(f"drop{trunk['dropout']:g}{trunk['dropout_at']}" if trunk["dropout"] else "nodrop")
    if "task_layers" in diff:
        tokens.append("head" + "-".join(map(str, trunk["task_layers"])))
    tokens += [f"{trunk[k]}{k}" for k in config_keys() if k in diff]  # MMoE's `experts`: 8experts
    for k in sorted(set(diff) - {"shared_layers", "shared_width", "dropout", "dropout_at", "task_layers",
                                 *config_keys()}):
        v = trunk[k]
        tokens.append(k.rsplit(".", 1)[-1] + ("-".join(map(str, v)) if isinstance(v, list | tuple) else str(v)))
    return "-".join(["stl", task, trunk["architecture"], *tokens])


def plan(profile: dict, run_args: list[str], seeds=None) -> list[tuple[str, MTLConfig]]:
    """→ [(group, config)]: the derived single-task baselines first, then every experiment × seed."""
    if not profile.get("experiments"):
        raise UserError("an mtl profile needs a non-empty \"experiments\" list")
    names = [e.get("name") for e in profile["experiments"]]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise UserError(f"every experiment of an mtl profile needs a distinct \"name\"; got {names}")
    configs = []
    for exp in profile["experiments"]:  # --seeds, else the experiment's own "seeds", else the profile's
        for seed in seeds if seeds is not None else exp.get("seeds", profile.get("seeds", [0])):
            defaults = profile.get("config", {}) | {k: v for k, v in exp.items() if k not in (*META_KEYS, "seeds")}
            cfg, _ = parse_mtl_config(run_args, defaults=defaults | {"seed": seed},
                                      origin=f"the profile's experiment {exp['name']!r} or its \"config\"")
            configs.append((exp.get("group", ""), cfg))
    if not isinstance(derive := profile.get("baselines", True), bool):
        raise UserError(f"an mtl profile's \"baselines\" is true (derive the single-task baselines: the default) or "
                        f"false, got {derive!r}")
    return (_baselines(profile, run_args, configs) if derive else []) + configs


def _baselines(profile: dict, run_args: list[str], configs) -> list[tuple[str, MTLConfig]]:
    have = {(trunk_key(c.to_dict()), task_names(c)[0], c.seed) for _, c in configs
            if is_baseline(task_names(c), c.weighting, c.schedule)}
    shared = parse_mtl_config(run_args, defaults=dict(profile.get("config", {})))[0].to_dict()
    # a name says 8experts only if not the profile's value
    reference = trunk_config(shared) | {k: shared[k] for k in config_keys()}
    out, taken = [], {}  # taken: name → trunk key, so two trunks never share a folder
    for _, cfg in configs:
        if len(task_names(cfg)) < 2:
            continue
        key = trunk_key(cfg.to_dict())
        for task in task_names(cfg):
            if (key, task, cfg.seed) in have:
                continue
            name = baseline_name(task, trunk_config(cfg.to_dict()), reference)
            if taken.setdefault(name, key) != key:
                name += "-" + hashlib.sha1(key.encode()).hexdigest()[:6]
            overrides = trunk_flags(cfg.to_dict()) | {"tasks": task, "weighting": "equal", "schedule": "joint",
                                                      "name": name, "seed": cfg.seed}
            base, _ = parse_mtl_config(run_args, defaults=dict(profile.get("config", {})) | overrides)
            if trunk_key(base.to_dict()) != key:  # a flag in run_args beat the experiment's trunk: say so
                raise UserError(f"cannot derive the {task} baseline of {cfg.run_name}: its trunk differs "
                                f"({trunk_config(base.to_dict())} vs {trunk_config(cfg.to_dict())})")
            have.add((key, task, cfg.seed))
            out.append((BASELINE_GROUP, base))
    return out


def run_mtl_batch(profile_name: str, profile: dict, run_args: list[str], seeds=None, force=False, debug=False,
                  executor=None) -> int:
    """Every experiment × seed of an MTL profile (a dict, as its JSON holds it) through the core's batch runner."""
    return run_grid(profile_name, {**profile, "kind": "mtl"}, run_args, seeds=seeds, force=force, debug=debug,
                    executor=executor)


def _plan_grid(profile_name: str, profile: dict, run_args: list[str], seeds, selection: dict):
    if any(v is not None for v in selection.values()):
        raise UserError(f"profile {profile_name!r} is a multi-task profile: --streams/--strategies do not apply (it "
                        f"runs every experiment; --seeds selects seeds)")
    return plan(profile, run_args, seeds)


def run_one(cfg: MTLConfig, force: bool = False) -> tuple[Path, str]:
    """One experiment (benchmark.mtl.run.run_mtl), imported when a run starts: planning needs no model code."""
    from benchmark.mtl.run import run_mtl

    return run_mtl(cfg, force=force)


def _report(out_dir: Path, failed: list[str], planned, report_dir: Path | None = None) -> tuple[str, str]:
    """The batch's report (groups and order: the profile's, kept in groups.json), or a rebuild (planned None)."""
    from benchmark.mtl.report import write_mtl_report

    groups_file = Path(out_dir) / "mtl" / "groups.json"
    if planned is not None:
        groups = {cfg.run_name: group for group, cfg in planned}
        atomic_write(groups_file, json.dumps(groups, indent=1) + "\n")
    else:
        groups = json.loads(groups_file.read_text()) if groups_file.is_file() else None
    text = write_mtl_report(out_dir, groups, failed, report_dir=report_dir)
    return text, str(Path(report_dir or out_dir) / "mtl" / "summary.md")


def _wandb_summary(profile_name: str, configs: list) -> None:
    """With --wandb offline/online: one summary run for the batch, as a continual batch has
    (benchmark.outputs.tracking.log_summary_run): the leaderboard (mtl/summary.csv) and the Pareto front as tables,
    the front's experiments as the summary value `pareto_front`, and val_curves.png."""
    cfg = configs[0]
    home = Path(cfg.out_dir) / "mtl"
    if cfg.wandb == "off" or not (home / "summary.csv").is_file():
        return
    import pandas as pd

    from benchmark.mtl.report import pareto_table
    from benchmark.outputs.tracking import log_summary_run

    def content():
        with open(home / "summary.csv", newline="") as f:
            header, *rows = list(csv.reader(f))
        columns, front_rows = pareto_table(pd.read_csv(home / "summary.csv"))
        images = {"val_curves": home / "val_curves.png"} if (home / "val_curves.png").is_file() else {}
        front = [r[0] for r in front_rows if r[columns.index("on_front")]]
        return {"leaderboard": (header, rows), "pareto": (columns, front_rows)}, images, {"pareto_front": front}

    info = log_summary_run(cfg.wandb, content, project=cfg.wandb_project, entity=cfg.wandb_entity,
                           out_dir=cfg.out_dir, profile=profile_name)
    print(f"[batch] wandb summary run: {info.get('id', info.get('error', info['mode']))}", file=sys.stderr)


def _check_weights(configs: list) -> None:
    from benchmark.models.pretrained_weights import check_weights_available

    for backbone in dict.fromkeys(c.backbone for c in configs):
        check_weights_available(backbone)  # missing weights would fail every experiment alike: stop before any


register_grid_kind("mtl", GridKind(plan=_plan_grid, run=run_one, tag=lambda c: f"{c.run_name}/seed{c.seed}",
                                   home=lambda out_dir: Path(out_dir) / "mtl", report=_report, noun="experiment",
                                   label="mtl ", check=_check_weights,
                                   after_report=_wandb_summary))
