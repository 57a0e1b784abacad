"""`hatswap evaluate RUN_FOLDER`: a saved model (--save-model) evaluated again on its run's stream, rebuilt from
config.json (the same data, seed, scenario and feature cache), through the run's own evaluation (the strategy's
template and the harness's plugins, benchmark/harness/evaluation.py): on the same machine its row equals the run's
final row of R (matrix.csv) exactly; `--split val` scores it on the validation split instead; `--stream NAME` (with
that stream's `--NAME.*` knobs) on another stream whose tasks have the saved heads' kinds and sizes."""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.harness.evaluation import EvaluationLog, evaluate
from benchmark.harness.feature_cache import use_feature_cache
from benchmark.harness.harness_plugins import PrimaryScoreCollector, TrainLog
from benchmark.harness.model_export import build_strategy, deployed, load_strictly, read_saved, run_config, spec_dict
from benchmark.harness.run import build_stream_and_model, harness_plugins, log
from benchmark.harness.scenarios import apply_scenario, stream_label
from benchmark.outputs.results import matrix_csv, read_run
from benchmark.outputs.tracking import WandbTracker
from benchmark.registry import STRATEGIES
from benchmark.runtime.device import compute_dtype, prepare_runtime

SPLITS = ("test", "val")


def on_split(cfg: RunConfig, split: str) -> RunConfig:
    """The run's config scoring on `split`: its stream's `eval_split` knob (a stream without one has only its test
    split)."""
    if split == getattr(cfg.stream_args, "eval_split", "test"):
        return cfg
    if not hasattr(cfg.stream_args, "eval_split"):
        raise UserError(f"stream {cfg.stream} has no validation split; pass --split test (or drop --split)")
    return dataclasses.replace(cfg, stream_args=dataclasses.replace(cfg.stream_args, eval_split=split))


def reevaluate(folder, split: str = "test",
               stream_flags: list[str] | None = None) -> tuple[list[str], str, list[float]]:
    """→ (task names, the row's label as matrix.csv names it, one score per task) of the saved model in `folder`;
    `stream_flags`: `--stream NAME` and its knobs' flags, to score it on another stream."""
    folder = Path(folder)
    record, manifest, state = read_saved(folder)
    cfg = on_split(run_config(record["config"], str(folder / "config.json"), stream_flags), split)
    files, problem = read_run(folder)
    if problem:
        raise UserError(f"{folder} is not a complete run ({problem}); rerun it: `hatswap run ... --save-model`")
    label = files.matrix[1][-1]  # the final row's label, as matrix.csv names it
    device, entry = prepare_runtime(cfg), STRATEGIES.get(cfg.strategy)
    tag = f"evaluate {stream_label(cfg.stream, cfg.scenario, cfg.architecture)}/{cfg.strategy}/seed{cfg.seed}"
    say = partial(log, tag)
    with compute_dtype(cfg.dtype):
        pixels, model, backbone_id = build_stream_and_model(cfg, device, say)
        same_heads(model.tasks, manifest, cfg.stream, folder)
        bench, net, backbone_id = use_feature_cache(cfg, pixels, model, backbone_id, device, log=say)
        bench = apply_scenario(cfg.scenario, bench, cfg.stream)
        cached, tracker = "feature_cache" in backbone_id, WandbTracker("off")
        collector = PrimaryScoreCollector(bench.column_specs, bench.class_ranges)
        n_train = len(bench.scenario.train_stream)
        plugins = harness_plugins(cfg, entry.meta, n_train, collector, TrainLog(), cached, tracker, tag, say)
        strategy = build_strategy(cfg, net, plugins, bench.tasks, device)
        strategy.scenario = cfg.scenario
        load_strictly(deployed(model, strategy.model, cached), state, folder)
        collector.trained_upto = None if entry.meta.one_shot else n_train - 1  # class-IL: every class was trained
        rows = EvaluationLog([s.name for s in collector.specs])
        evaluate(strategy, bench.scenario.test_stream, collector, label, rows, tracker)
    return rows.task_names, label, rows.scores[-1][1]


def same_heads(tasks, manifest: dict, stream: str, folder: Path) -> None:
    """The stream's heads must be the saved model's (kinds and sizes; names may differ), or one error line."""
    def shape(specs):
        return [(t["kind"], t["params"]) for t in specs]

    mine = [spec_dict(t) for t in tasks]
    if shape(mine) != shape(manifest["head_tasks"]):
        theirs = ", ".join(f"{t['name']} ({t['kind']})" for t in manifest["head_tasks"])
        heads = ", ".join(f"{t['name']} ({t['kind']})" for t in mine)
        raise UserError(f"--stream {stream} gives heads {heads}; the model in {folder} has {theirs}: evaluate it on a "
                        f"stream with the same tasks")


def cmd_evaluate(argv) -> int:
    """`hatswap evaluate RUN_FOLDER [--split test|val]`: the saved model's R row on stdout, as matrix.csv writes it
    (its header, then the row)."""
    from benchmark.config import CommandParser

    p = CommandParser(prog="hatswap evaluate", description="Evaluate a run's saved model (written with --save-model) "
                      "again on its stream, rebuilt from its config.json; prints its R row as matrix.csv holds it.")
    p.add_argument("folder", type=Path, help="the run folder (results/runs/<stream>/<strategy>/seed<k>)")
    p.add_argument("--split", choices=SPLITS, default="test", help="score on the test split (the run's R) or the "
                   "validation split (default: test)")
    p.add_argument("--stream", default="", help="score on this stream instead of the run's (its tasks must have the "
                   "saved heads' kinds and sizes); its knobs as in `hatswap run` (--binary_tasks.test-per-task 500)")
    p.add_argument("--debug", action="store_true")
    ns, rest = p.parse_known_args(argv)
    if rest and not ns.stream:
        p.error(f"unrecognized arguments: {' '.join(rest)} (a stream's knobs go with --stream NAME)")
    if other := [a for a in rest if a.startswith("-") and not a.startswith(f"--{ns.stream}.")]:
        p.error(f"unrecognized arguments: {' '.join(other)} (with --stream {ns.stream}, only its own knobs: "
                f"--{ns.stream}.<knob>)")
    flags = ["--stream", ns.stream, *rest] if ns.stream else None
    names, label, scores = reevaluate(ns.folder, ns.split, flags)
    sys.stdout.write(matrix_csv(names, [(label, scores)]))
    return 0
