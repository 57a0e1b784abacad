"""summary.json of a continual-learning run: its metrics, R's rows, the budget (parameters, training time,
inference latency), and where every number came from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.harness.feature_cache import WithBackbone, cached_run_latency, default_cache_dir
from benchmark.outputs.references import trivial_references
from benchmark.outputs.results import data_source, score_summary
from benchmark.runtime.device import latency_ms_per_image


@dataclass(frozen=True)
class RunHeader:
    """What summary.json says the run was: its names, and its training as one line (harness_plugins'
    describe_training); the pieces of the run's config the summary reads, so the whole config never reaches it."""

    stream: str  # the stream's label, with its scenario (benchmark/harness/scenarios.py's stream_label)
    scenario: str
    strategy: str
    seed: int
    training: str


def run_scores(log, meta) -> dict:
    """The score keys every summary holds (benchmark.outputs.results.score_summary: ACC, BWT, forgetting, FWT, final,
    just trained, untrained); a single-task baseline's rows are separate models, so only R's diagonal means
    something: ACC = its mean, the rest undefined."""
    scores = score_summary(log.scores, sequential=not meta.one_shot)
    if meta.baseline:
        scores |= {"acc": float(np.diag(log.R).mean()), "bwt": None, "forgetting": None, "fwt": None}
    return scores


def task_il_rows(log) -> list[tuple[str, list[float]]]:
    """A class-IL run's task-IL R (every row: each task's accuracy with the logits masked to its own classes)."""
    return [(label, [e["task_il_accuracy"] for e in row]) for label, row in log.extras]


def task_il_view(scenario: str, meta, log) -> dict:
    """{} but for a class-IL run; its `task_il`: its masked R and that R's ACC, BWT, forgetting, FWT."""
    if scenario != "class-il":
        return {}
    rows = task_il_rows(log)
    return {"task_il": {"eval_score": dict(rows)} | score_summary(rows, sequential=not meta.one_shot)}


def budget(model, net, probes, device, backbone_id: dict, train_wall_s: float, cache_dir: Path | None) -> dict:
    """What the trained network costs as deployed. `model`: the network as built (its backbone); `net`: what
    was trained (a strategy may wrap it; on cached features it has no backbone of its own). A cached run's
    backbone latency is measured once per machine and input and reused (benchmark/harness/feature_cache.py; `cache_dir`:
    --cache-dir, None for the default)."""
    latency_how = None
    if "feature_cache" in backbone_id:
        ms, latency_how = cached_run_latency(model.backbone, net, probes, device, backbone_id,
                                             cache_dir or default_cache_dir())
        net = WithBackbone(model.backbone, net)
    else:
        ms = latency_ms_per_image(net, probes, device)
    latency = dict(zip([t.name for t in model.tasks], ms, strict=True))
    return {"params": sum(p.numel() for p in net.parameters()),
            "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "train_wall_s": train_wall_s, "latency_ms_per_image": sum(latency.values()) / len(latency),
            "latency_ms_per_task": latency, **({"latency_parts": latency_how} if latency_how else {}),
            "device": str(device)}


def run_summary(run: RunHeader, meta, log, cost: dict, train_log, pixels, tasks, t_start: float, wandb: dict | None,
                backbone_weights: str) -> dict:
    """`log`: R's rows; `cost`: budget's; `pixels`: the stream on images (trivial references are computed on them, not
    on cached features); `wandb`: the tracker's info. Its ACC, BWT, forgetting and FWT are run_scores'."""
    names, data, scores = [t.name for t in tasks], pixels.provenance["train"], run_scores(log, meta)
    return {k: scores[k] for k in ("acc", "bwt", "forgetting", "fwt")} | task_il_view(run.scenario, meta, log) | {
        "stream": run.stream, "scenario": run.scenario, "strategy": run.strategy,
        "seed": run.seed, "status": "ok", "tasks": names,
        "baseline": meta.baseline, "final": scores["final"], "just_trained": scores["just_trained"],
        "untrained": scores["untrained"], "eval_score": dict(log.scores), "eval_loss": dict(log.losses),
        "exp_wall_s": train_log.exp_wall_s,
        "eval_wall_s": log.wall_s, "train_wall_s": cost["train_wall_s"], "budget": cost,
        "metric_units": {t.name: t.primary for t in tasks},
        "references": trivial_references(pixels) if meta.baseline else None,
        "training": run.training, "extra_scores": log.extra_scores(),
        "total_wall_s": time.perf_counter() - t_start, "epoch_train_loss": train_log.epoch_loss,
        "backbone_weights": backbone_weights,
        "data_source": data_source(data), "device": cost["device"],
        "wandb": wandb}
