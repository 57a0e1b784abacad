"""One run: stream × strategy × seed → R matrix → results folder. Wiring only; each piece lives in its own module."""

from __future__ import annotations

import os
import random
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from avalanche.training.plugins import EvaluationPlugin
from tqdm import tqdm

from benchmark.config import RunConfig
from benchmark.dense.kinds import KINDS, dense_criterion, is_dense
from benchmark.device import latency_ms_per_image, maybe_compile, resolve_device, set_autocast
from benchmark.fast_batches import FastCachedBatches
from benchmark.feature_cache import WithBackbone, cached_run_latency, default_cache_dir, use_feature_cache
from benchmark.harness_plugins import (
    CosineLR,
    FiniteLossGuard,
    PrimaryScoreCollector,
    ProgressBar,
    TrainLog,
    describe_training,
)
from benchmark.metrics import cl_metrics
from benchmark.models import build_model
from benchmark.models.backbone_training import build_optimizer
from benchmark.plots import run_figures
from benchmark.references import trivial_references
from benchmark.registry import STRATEGIES, STREAMS
from benchmark.results import claim_run_folder, config_record, matrix_csv, release_run_folder, run_dir, write_run
from benchmark.tracking import WandbTracker


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log(tag: str, msg: str) -> None:
    tqdm.write(f"[{tag}] {msg}", file=sys.stderr)  # keeps any progress bar intact


def run(cfg: RunConfig, force: bool = False, extra_plugins=(), evaluator=None) -> tuple[Path, str]:
    """Train and evaluate; → (run folder, 'done' | 'skipped'). `evaluator`: an Avalanche EvaluationPlugin to attach
    (e.g. to cross-check our metrics with Avalanche's); our R never depends on it."""
    folder = run_dir(cfg.out_dir, cfg.stream, cfg.strategy, cfg.seed)
    tag = f"{cfg.stream}/{cfg.strategy}/seed{cfg.seed}"
    if not claim_run_folder(folder, cfg.to_dict(), cfg.out_dir, force):
        return folder, "skipped"
    try:  # a run that fails gives its folder back too (write_run gives it back on success)
        return _train(cfg, folder, tag, force, extra_plugins, evaluator)
    finally:
        release_run_folder(folder)


def _train(cfg: RunConfig, folder: Path, tag: str, force: bool, extra_plugins, evaluator) -> tuple[Path, str]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()

    seed_everything(cfg.seed)
    stream = STREAMS.get(cfg.stream)
    bench = stream.build(cfg.stream_args, seed=cfg.seed, data_root=cfg.data_root, download=cfg.download,
                         apt_install=cfg.apt_install)
    x0 = bench.scenario.test_stream[0].dataset[0][0]
    seed_everything(cfg.seed)  # weights and shuffling do not depend on how much randomness data loading used
    model, backbone_id = build_model(cfg, bench.tasks, image_size=x0.shape[-1], in_chans=x0.shape[0])
    log(tag, f"backbone {cfg.backbone} ({backbone_id['weights']}, {backbone_id['mode']}, "
             f"{backbone_id['params']:,} params); data {bench.provenance['train']['origin']} "
             f"{bench.provenance['train']['files']}; device {device}")
    set_autocast(model, device, cfg.amp)
    dense = is_dense(bench.tasks)
    backbone = model.backbone  # the feature cache swaps in nn.Identity; the budget still counts and times this one
    probes = [(bench.scenario.test_stream[t].dataset[0][0], t) for t in range(len(bench.tasks))]  # one image a task
    pixels = bench  # trivial references are computed on images, not on the cached features
    if not dense:
        bench, backbone_id = use_feature_cache(cfg, bench, model, backbone_id, device, log=lambda m: log(tag, m))
    elif cfg.backbone_mode == "frozen" and cfg.feature_cache:
        log(tag, "feature cache: not used on the dense suite (its heads read feature maps, the cache holds pooled "
                 "features); the frozen backbone runs every step")
    maybe_compile(model, cfg.compile)

    entry = STRATEGIES.get(cfg.strategy)
    scores = PrimaryScoreCollector([partial(KINDS[t.kind].metric, t) for t in bench.tasks] if dense else None)
    train_log = TrainLog()
    schedule = [CosineLR(cfg.epochs)] if cfg.lr_schedule == "cosine" else []  # restarted every experience
    train_log.on_exp_end = lambda i, s: log(tag, f"experience {i} trained in {s:.1f}s")
    task_names = [t.name for t in bench.tasks]
    tracker = WandbTracker(cfg.wandb, project=cfg.wandb_project, entity=cfg.wandb_entity, out_dir=cfg.out_dir,
                           name=tag, group=cfg.stream, job_type=cfg.strategy, config=cfg.to_dict())
    # cached features: batches gathered by index (bit-identical; HATSWAP_SLOW_BATCHES=1 keeps Avalanche's fetching)
    fast = [FastCachedBatches(log=lambda m: log(tag, m))] if "feature_cache" in backbone_id and \
        os.environ.get("HATSWAP_SLOW_BATCHES") != "1" else []
    strategy = entry.build(
        cfg.strategy_args, plugins=[*fast, scores, train_log, FiniteLossGuard(), tracker, ProgressBar(tag), *schedule,
                                    *extra_plugins], model=model,
        optimizer=build_optimizer(model, cfg.lr, cfg.backbone_lr, cfg.weight_decay, cfg.optimizer),
        criterion=dense_criterion(bench.tasks) if dense else torch.nn.CrossEntropyLoss(),
        train_mb_size=cfg.batch_size, train_epochs=cfg.epochs,
        eval_mb_size=cfg.eval_batch_size, device=device, evaluator=evaluator or EvaluationPlugin(loggers=[]),
        eval_every=-1)

    test_stream, eval_wall, rows, loss_rows, extras = bench.scenario.test_stream, [], [], [], []

    def evaluate(label: str) -> None:
        t0 = time.perf_counter()
        strategy.eval(test_stream)
        eval_wall.append(time.perf_counter() - t0)
        rows.append((label, [scores.scores[j] for j in range(len(task_names))]))
        loss_rows.append((label, [scores.losses[j] for j in range(len(task_names))]))
        if scores.extras:
            extras.append((label, [scores.extras[j] for j in range(len(task_names))]))
        tracker.log_eval(len(rows) - 2, task_names, rows[-1][1], loss_rows[-1][1])

    try:
        evaluate("init")
        if entry.meta.get("one_shot"):
            strategy.train(bench.scenario.train_stream)
            evaluate("after_joint")
        else:
            for i, experience in enumerate(bench.scenario.train_stream):
                strategy.train(experience)
                evaluate(f"after_exp{i}")
                log(tag, f"R[{i}] = " + " ".join(f"{v:.3f}" for v in rows[-1][1]))

        R = np.array([r for _, r in rows[1:]])
        metrics = cl_metrics(R, b=rows[0][1])
        if entry.meta.get("baseline"):  # single-task baselines: only the diagonal means something
            metrics = {"acc": float(np.diag(R).mean()), "bwt": None, "forgetting": None, "fwt": None}
        net = strategy.model  # the trained one (a strategy may wrap the model it was given)
        latency_how = None
        if "feature_cache" in backbone_id:  # as deployed: backbone (timed once per machine and input) + the rest
            ms, latency_how = cached_run_latency(backbone, net, probes, device, backbone_id,
                                                 Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir())
            net = WithBackbone(backbone, net)  # what the budget counts
        else:
            ms = latency_ms_per_image(net, probes, device)
        latency = dict(zip(task_names, ms, strict=True))
        latency_mean = sum(latency.values()) / len(latency)
        data = bench.provenance["train"]
        summary = metrics | {
            "stream": cfg.stream, "strategy": cfg.strategy, "seed": cfg.seed, "status": "ok", "tasks": task_names,
            "baseline": bool(entry.meta.get("baseline")),
            "final": R[-1].tolist(), "just_trained": np.diag(R).tolist() if R.shape[0] == R.shape[1] else None,
            "untrained": rows[0][1], "eval_loss": dict(loss_rows), "exp_wall_s": train_log.exp_wall_s,
            "eval_wall_s": eval_wall, "train_wall_s": sum(train_log.exp_wall_s),
            "budget": {"params": sum(p.numel() for p in net.parameters()),
                       "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
                       "train_wall_s": sum(train_log.exp_wall_s), "latency_ms_per_image": latency_mean,
                       "latency_ms_per_task": latency, **({"latency_parts": latency_how} if latency_how else {}),
                       "device": str(device)},
            "metric_units": {t.name: t.primary for t in bench.tasks},
            "references": trivial_references(pixels) if entry.meta.get("baseline") else None,
            "training": describe_training(cfg, bool(entry.meta.get("one_shot"))),
            "extra_scores": {label: dict(zip(task_names, e, strict=True)) for label, e in extras} or None,
            "total_wall_s": time.perf_counter() - t_start, "epoch_train_loss": train_log.epoch_loss,
            "backbone_weights": backbone_id["weights"],
            "data_source": f"{data['source']} (files sha256 {data['sha256'][:12]})", "device": str(device),
            "wandb": tracker.info}
        record = config_record(cfg.to_dict(), bench.provenance, backbone_id, str(device))
        write_run(folder, record, matrix_csv(task_names, rows), summary, force=force,
                  fill=lambda d: run_figures(d, rows, loss_rows, train_log.epoch_loss, task_names, tag))
        tracker.log_final(task_names, rows, summary, heatmap_png=folder / "heatmap.png")
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    fmt = {k: "n/a" if v is None else f"{v:+.3f}" for k, v in metrics.items()}
    log(tag, f"budget: {summary['budget']['params']:,} params, train {summary['train_wall_s']:.1f}s, "
             f"inference {latency_mean:.2f} ms/image (batch 1, {device})")
    log(tag, f"ACC {fmt['acc']}  BWT {fmt['bwt']}  forgetting {fmt['forgetting']}  FWT {fmt['fwt']}  "
             f"({summary['total_wall_s']:.1f}s) → {folder}")
    return folder, "done"
