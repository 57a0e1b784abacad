"""One multi-task experiment: task set × architecture × weighting × schedule × seed → results folder.

results/mtl/runs/<experiment>/seed<k>/  config.json (config, seed, versions, git, data), matrix.csv (primary score
per task at each evaluation point: init, after_joint or after_exp0..), summary.json (the keys every run's summary
holds, benchmark.outputs.results.SUMMARY_KEYS: ACC/BWT/forgetting/FWT (BWT, forgetting, FWT for the sequential schedule
only), final scores, ...; beside them every test metric per task, final validation scores, losses and validation
scores per epoch, weights, per-task gradient norms and cosines per epoch, the metric Δm compares per task, the
trivial references of the data), losses.png, gradients.png (benchmark/mtl/gradients.py).
Written under a temporary name and renamed, so a folder is complete or absent; a rerun with the same config skips.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmark.errors import UserError
from benchmark.mtl.config import MTLConfig
from benchmark.mtl.gradients import measured_relations, parse_relations_text
from benchmark.mtl.model import MultiTaskModel
from benchmark.mtl.options import task_values
from benchmark.mtl.plots import gradient_curves, loss_curves
from benchmark.mtl.registries import SCHEDULES, TASK_SETS
from benchmark.mtl.train import train_stages
from benchmark.outputs.results import (
    config_record,
    data_source,
    in_claimed_folder,
    matrix_csv,
    score_summary,
    write_run,
)
from benchmark.outputs.tracking import WandbTracker
from benchmark.runtime.device import compute_dtype, prepare_runtime, seed_everything
from benchmark.tasks import kind_of


def mtl_run_dir(out_dir: Path, name: str, seed: int) -> Path:
    return Path(out_dir) / "mtl" / "runs" / name / f"seed{seed}"


def _references_of(refs: dict, names) -> dict:
    """The data's trivial references (MTLData.references) restricted to the run's tasks."""
    out = {"primary": {t: refs["primary"][t] for t in names}}
    for split, by_ref in refs.items():
        if split != "primary":
            out[split] = {ref: kept for ref, per_task in by_ref.items()
                          if (kept := {t: v for t, v in per_task.items() if t in names})}
    return out


def build_model(cfg: MTLConfig, tasks, input_shape, task_set_names=None) -> MultiTaskModel:
    """task_set_names: every task of the task set; --task-lr and --task-relations may name any of them (a profile's
    shared value also configures its single-task baselines), and apply to those the run trains."""
    names = [t.name for t in tasks]
    lrs, relations = task_values(cfg.task_lr, "--task-lr"), parse_relations_text(cfg.task_relations)
    for flag, named in (("--task-lr", list(lrs)), ("--task-relations", [t for pair in relations for t in pair])):
        if unknown := sorted({t for t in named if t not in (task_set_names or names)}):
            raise UserError(f"{flag} names unknown task(s) {unknown}; tasks are {list(task_set_names or names)}")
    return MultiTaskModel(tasks, architecture=cfg.architecture, shared_layers=[cfg.shared_width] * cfg.shared_layers,
                          task_layers=cfg.task_layers, loss_weighting=cfg.weighting, weighting_args=cfg.weighting_args,
                          dropout=cfg.dropout, dropout_at=cfg.dropout_at,
                          backbone=cfg.backbone, backbone_args=cfg.backbone_args, input_shape=tuple(input_shape),
                          architecture_args=cfg.architecture_args, pooling=cfg.pooling, activation=cfg.activation,
                          task_lrs={t: v for t, v in lrs.items() if t in names},
                          task_relations={pair: r for pair, r in relations.items() if set(pair) <= set(names)})


def run_mtl(cfg: MTLConfig, force: bool = False) -> tuple[Path, str]:
    folder = mtl_run_dir(cfg.out_dir, cfg.run_name, cfg.seed)
    tag = f"mtl/{cfg.run_name}/seed{cfg.seed}"
    def train():
        with compute_dtype(cfg.dtype):
            return _train(cfg, folder, tag, force)

    return in_claimed_folder(folder, cfg.to_dict(), cfg.out_dir, force, train, elsewhere="another --name / --out-dir")


def _train(cfg: MTLConfig, folder: Path, tag: str, force: bool) -> tuple[Path, str]:
    device = prepare_runtime(cfg)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{tag}] {msg}", file=sys.stderr)

    seed_everything(cfg.seed)
    with compute_dtype("float32"):  # float32 data whatever the run computes in (ToTensor follows the default dtype)
        data = TASK_SETS.get(cfg.task_set).build(cfg.task_set_args, seed=cfg.seed, data_root=cfg.data_root,
                                                 download=cfg.download, apt_install=cfg.apt_install)
    tasks = data.select(cfg.tasks)
    names = tuple(t.name for t in tasks)
    stages = SCHEDULES.get(cfg.schedule).build(cfg.schedule_args, epochs=cfg.epochs, tasks=names)
    seed_everything(cfg.seed)  # weights do not depend on how much randomness data loading used
    model = build_model(cfg, tasks, data.x["train"].shape[1:], [t.name for t in data.tasks]).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.architecture} x {cfg.weighting} x {cfg.schedule} on {', '.join(names)}; {cfg.backbone}, "
        f"{n_params:,} params; data {data.provenance['sizes']}")

    tracker = WandbTracker(cfg.wandb, project=cfg.wandb_project, entity=cfg.wandb_entity, out_dir=cfg.out_dir,
                           name=tag, group=cfg.wandb_group or "mtl", job_type=cfg.architecture, config=cfg.to_dict())
    # What the summary says the run was: the pieces of its config it reads, so the whole config never reaches it.
    identity = {"name": cfg.run_name, "seed": cfg.seed, "status": "ok", "task_set": cfg.task_set, "tasks": list(names),
                "architecture": cfg.architecture, "weighting": cfg.weighting, "schedule": cfg.schedule,
                "backbone": cfg.backbone}
    try:
        trained = train_stages(model, data, stages, cfg, device, log)
        summary, score_rows = _summary(identity, tasks, trained, data, model, t_start, str(device), tracker.info)
        _write(folder, config_record(cfg.to_dict(), data.provenance, model.backbone_identity, str(device)), tag,
               summary, score_rows, force)
        tracker.log_epochs(summary["epochs"])
        tracker.log_final(list(names), score_rows, summary)
        final, primary = summary["final_metrics"], summary["metric_units"]
        log(" ".join(f"{t} {primary[t]} {final[t][primary[t]]:.3f}" for t in names) +
            f"; train {summary['train_loss']:.4f} val {summary['val_loss']:.4f} ({summary['total_wall_s']:.1f}s) → "
            f"{folder}")
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    return folder, "done"


def _summary(identity: dict, tasks, trained, data, model, t_start: float, device: str, wandb) -> tuple[dict, list]:
    """→ (summary.json, R's rows). `identity`: the summary's keys naming the run (its config's pieces); `trained`:
    train_stages' (rows, per-epoch log, training seconds); `wandb`: the tracker's info."""
    rows, epochs, train_s = trained
    names, n_params = tuple(t.name for t in tasks), sum(p.numel() for p in model.parameters())
    primary = {t.name: t.primary for t in tasks}
    score_rows = [(label, [scores[t][primary[t]] for t in names]) for label, scores in rows]
    sequential = len(score_rows) - 1 == len(names) and SCHEDULES.get(identity["schedule"]).meta.continual
    summary = score_summary(score_rows, sequential) | identity | {
        "metric_units": primary,
        "final_metrics": rows[-1][1],  # every metric of every task after training (`final`: the primary ones)
        "final_val": epochs[-1]["val"],  # validation scores after the last epoch: what settings are tuned on
        "final_val_primary": {t: v[primary[t]] for t, v in epochs[-1]["val"].items()},
        "transfer_metric": {t.name: dict(zip(("metric", "lower_is_better"), kind_of(t).transfer, strict=True))
                            for t in tasks},
        "references": _references_of(data.references, names),
        "train_loss": epochs[-1]["train_total"], "val_loss": epochs[-1]["val_total"],
        "evaluations": {label: scores for label, scores in rows}, "epochs": epochs, "params": n_params,
        "train_wall_s": train_s, "total_wall_s": time.perf_counter() - t_start,
        "data_source": data_source(data.provenance.get("train", {})), "device": device, "wandb": wandb,
        "task_relations": measured_relations(epochs, model.task_relations, list(names))}
    return summary, score_rows


def _write(folder: Path, record: dict, tag: str, summary: dict, score_rows: list, force: bool) -> None:
    names, epochs = summary["tasks"], summary["epochs"]
    write_run(folder, record, matrix_csv(names, score_rows), summary, force=force,
              fill=lambda d: (loss_curves(epochs, names, d / "losses.png", title=tag),
                              gradient_curves(epochs, d / "gradients.png", title=tag)))
