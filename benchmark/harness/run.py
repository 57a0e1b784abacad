"""One run: stream × strategy × seed → R matrix → results folder. Wiring only; each piece lives in its own module:

    stream (benchmark/streams) → model (benchmark/models/hatswap_net.py, heads from benchmark/tasks)
    → feature cache (benchmark/harness/feature_cache.py) → strategy (strategies/, an Avalanche template + the harness's
    plugins, benchmark/harness/harness_plugins.py) → R, row by row (benchmark/harness/evaluation.py) → metrics and
    budget (benchmark/harness/summary.py) → run folder, written atomically (benchmark/outputs/results.py)
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path

from tqdm import tqdm

from benchmark.config import RunConfig
from benchmark.harness.checkpoint import Resume
from benchmark.harness.evaluation import train_and_evaluate
from benchmark.harness.fast_batches import FastCachedBatches
from benchmark.harness.feature_cache import use_feature_cache
from benchmark.harness.harness_plugins import (
    FiniteLossGuard,
    PrimaryScoreCollector,
    ProgressBar,
    TaskLoss,
    TrainLog,
    describe_training,
    schedule_plugins,
    strategy_float_knobs,
)
from benchmark.harness.model_export import build_strategy, deployed, save_model
from benchmark.harness.plugin_check import check_plugin_hooks
from benchmark.harness.sampling import ClassBalancedSampling
from benchmark.harness.scenarios import apply_scenario, model_tasks, stream_label
from benchmark.harness.summary import RunHeader, budget, run_summary, task_il_rows
from benchmark.outputs.plots import run_figures
from benchmark.outputs.results import config_record, in_claimed_folder, matrix_csv, run_dir, write_run
from benchmark.outputs.tracking import WandbTracker
from benchmark.registry import MODELS, STRATEGIES, STREAMS
from benchmark.runtime.device import compute_dtype, maybe_compile, prepare_runtime, seed_everything, set_autocast
from benchmark.runtime.randomness import PairedRandomness
from benchmark.tuning.record import experience_plugins


def log(tag: str, msg: str) -> None:
    tqdm.write(f"[{tag}] {msg}", file=sys.stderr)  # keeps any progress bar intact


def run(cfg: RunConfig, force: bool = False, extra_plugins=(), evaluator=None, batch: str = "") -> tuple[Path, str]:
    """Train and evaluate; → (run folder, 'done' | 'skipped'). `evaluator`: an Avalanche EvaluationPlugin to attach
    (e.g. to cross-check our metrics with Avalanche's); our R never depends on it. `batch`: the id of the batch
    running it (a Ray retry of a --force batch resumes from the checkpoint its first attempt wrote)."""
    folder = run_dir(cfg.out_dir, stream_label(cfg.stream, cfg.scenario, cfg.architecture), cfg.strategy, cfg.seed)
    def train():
        with compute_dtype(cfg.dtype):
            return _train(cfg, folder, force, extra_plugins, evaluator, batch)

    return in_claimed_folder(folder, cfg.to_dict(), cfg.out_dir, force, train)


def build_stream_and_model(cfg: RunConfig, device, say):
    """→ (benchmark on images, model, backbone identity); weights and shuffling do not depend on how much
    randomness data loading used."""
    seed_everything(cfg.seed)
    with compute_dtype("float32"):  # images are float32 data whatever the run computes in (ToTensor follows the
        # default dtype, and the stream's images are kept per process: a float64 run must not change a float32 one's)
        bench = STREAMS.get(cfg.stream).build(cfg.stream_args, seed=cfg.seed, data_root=cfg.data_root,
                                              download=cfg.download, apt_install=cfg.apt_install)
    x0 = bench.scenario.test_stream[0].dataset[0][0]
    seed_everything(cfg.seed)
    model, backbone_id = MODELS.get(cfg.architecture).build(cfg, model_tasks(cfg.scenario, bench.tasks, cfg.stream),
                                                            image_size=x0.shape[-1], in_chans=x0.shape[0])
    say(f"backbone {cfg.backbone} ({backbone_id['weights']}, {backbone_id['mode']}, {backbone_id['params']:,} "
        f"params); data {bench.provenance['train']['origin']} {bench.provenance['train']['files']}; device {device}")
    set_autocast(model, device, cfg.amp and cfg.dtype == "float32")
    return bench, model, backbone_id


def harness_plugins(cfg: RunConfig, meta, stream_experiences: int, collector, train_log, cached: bool, tracker,
                    tag: str, say) -> list:
    """What every strategy gets: first the paired randomness (benchmark/runtime/randomness.py) and the task loss's
    record, then R's collector (the evaluation reads it), the training log, the loss guard, wandb, a progress bar, the
    learning-rate schedule and optimizer restarts (`meta`: the strategy's, `stream_experiences`: the train stream's
    length, which a stream-long schedule spans), per-experience tuned values (benchmark/tuning/); the class-balanced
    sampler when asked; on cached features, batches gathered by index (bit-identical; HATSWAP_SLOW_BATCHES=1 keeps
    Avalanche's fetching)."""
    fast = [FastCachedBatches(log=say)] if cached and os.environ.get("HATSWAP_SLOW_BATCHES") != "1" else []
    balanced = [ClassBalancedSampling()] if cfg.sampler == "class-balanced" else []
    return [PairedRandomness(cfg.seed, log=say), TaskLoss(), *fast, *balanced, collector, train_log,
            FiniteLossGuard(strategy_float_knobs(cfg)), tracker, ProgressBar(tag),
            *schedule_plugins(cfg, meta, stream_experiences), *experience_plugins(cfg)]


def _train(cfg: RunConfig, folder: Path, force: bool, extra_plugins, evaluator, batch: str = "") -> tuple[Path, str]:
    label = stream_label(cfg.stream, cfg.scenario, cfg.architecture)
    tag, device, t_start = f"{label}/{cfg.strategy}/seed{cfg.seed}", prepare_runtime(cfg), time.perf_counter()
    say = partial(log, tag)
    pixels, model, backbone_id = build_stream_and_model(cfg, device, say)
    probes = [(pixels.scenario.test_stream[t].dataset[0][0], t) for t in range(len(model.tasks))]  # one per head
    bench, net, backbone_id = use_feature_cache(cfg, pixels, model, backbone_id, device, log=say)
    bench = apply_scenario(cfg.scenario, bench, cfg.stream)
    net = maybe_compile(net, cfg.compile)
    entry = STRATEGIES.get(cfg.strategy)
    resume = Resume.find(cfg, entry.meta, folder, force, pixels.provenance, say, cached="feature_cache" in backbone_id,
                         device=device, extra_plugins=extra_plugins, batch=batch)
    tracker = WandbTracker(cfg.wandb, project=cfg.wandb_project, entity=cfg.wandb_entity, out_dir=cfg.out_dir,
                           name=tag, group=cfg.wandb_group or cfg.stream, job_type=cfg.strategy, config=cfg.to_dict(),
                           resume_id=resume.wandb_id)
    collector = PrimaryScoreCollector(bench.column_specs, bench.class_ranges)
    train_log = TrainLog(on_exp_end=lambda i, s: say(f"experience {i} trained in {s:.1f}s"))
    plugins = harness_plugins(cfg, entry.meta, len(bench.scenario.train_stream), collector, train_log,
                              "feature_cache" in backbone_id, tracker, tag, say)
    strategy = build_strategy(cfg, net, [*plugins, *extra_plugins], bench.tasks, device, evaluator)
    check_plugin_hooks(strategy)
    strategy.scenario = cfg.scenario  # what LwF and replay read (benchmark/harness/scenarios.py)
    t_start -= resume.attach(strategy, bench.scenario.train_stream, tracker, t_start)
    try:
        export = model_export(cfg, pixels, model, strategy, backbone_id)
        rows = train_and_evaluate(strategy, bench.scenario, collector, tracker, entry.meta.one_shot, say,
                                  resumed=resume.log, after_row=resume.save)
        cost = budget(model, strategy.model, probes, device, backbone_id, sum(train_log.exp_wall_s),
                      Path(cfg.cache_dir) if cfg.cache_dir else None)
        header = RunHeader(label, cfg.scenario, cfg.strategy, cfg.seed,
                           describe_training(cfg, entry.meta, len(pixels.scenario.train_stream)))
        summary = run_summary(header, entry.meta, rows, cost, train_log, pixels, bench.column_specs, t_start,
                              tracker.info, backbone_id["weights"]) | {"resumed_after": resume.resumed_after}
        write_run(folder, config_record(cfg.to_dict(), bench.provenance, backbone_id, str(device)),
                  matrix_csv(rows.task_names, rows.scores), summary, force=force,
                  fill=lambda d: _fill(d, cfg, rows, train_log, tag, export))
        tracker.log_final(rows.task_names, rows.scores, summary, heatmap_png=folder / "heatmap.png")
        resume.finished(cfg.keep_checkpoints)
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    fmt = {k: "n/a" if summary[k] is None else f"{summary[k]:+.3f}" for k in ("acc", "bwt", "forgetting", "fwt")}
    say(f"budget: {cost['params']:,} params, train {cost['train_wall_s']:.1f}s, inference "
        f"{cost['latency_ms_per_image']:.2f} ms/image (batch 1, {device})")
    say(f"ACC {fmt['acc']}  BWT {fmt['bwt']}  forgetting {fmt['forgetting']}  FWT {fmt['fwt']}  "
        f"({summary['total_wall_s']:.1f}s) → {folder}")
    return folder, "done"


def model_export(cfg: RunConfig, pixels, model, strategy, backbone_id: dict):
    """With --save-model: → fill(folder) writing the final model (benchmark/harness/model_export.py); else None.
    The strategy's model is read when the run folder is filled, after the last experience."""
    if not cfg.save_model:
        return None
    x0, cached = pixels.scenario.test_stream[0].dataset[0][0], "feature_cache" in backbone_id
    return lambda folder: save_model(folder, deployed(model, strategy.model, cached), cfg.to_dict(), pixels.tasks,
                                     model.tasks, (x0.shape[-1], x0.shape[0]), cached, backbone_id)


def _fill(folder: Path, cfg: RunConfig, rows, train_log, tag: str, export=None) -> None:
    """The run folder's files besides config, matrix and summary: figures; a class-IL run's task-IL matrix; the model
    (--save-model)."""
    run_figures(folder, rows.scores, rows.losses, train_log.epoch_loss, rows.task_names, tag)
    if export is not None:
        export(folder)
    if cfg.scenario == "class-il":
        (folder / "matrix_task_il.csv").write_text(matrix_csv(rows.task_names, task_il_rows(rows)))
