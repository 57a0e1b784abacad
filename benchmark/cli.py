"""`hatswap` / `python -m benchmark`: run | batch | mtl | pretrain | tune | list | report | evaluate.

User errors print one line naming the fix and exit non-zero (2: bad input, 3: failed run); --debug shows the
traceback instead.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from benchmark.runtime.library_warnings import quiet_library_warnings

quiet_library_warnings()  # before any command imports avalanche

from benchmark.errors import RunFailed, UserError  # noqa: E402

UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # a full disk or quota, a read-only filesystem


def _names(text: str | None, flag: str) -> list[str] | None:
    """`a,b` → ['a', 'b']; None (flag absent) → None; a flag naming nothing is an error, not "all"."""
    if text is None:
        return None
    if not (names := [t.strip() for t in text.split(",") if t.strip()]):
        raise UserError(f"{flag} {text!r} names nothing; pass comma-separated values, or drop the flag")
    return names


def _int_list(text: str | None) -> list[int] | None:
    try:
        return None if text is None else [int(t) for t in _names(text, "--seeds")]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers, got {text!r}") from None


def _run_one(tag: str, run_fn, cfg, force: bool) -> int:
    """One run (`hatswap run` / `hatswap mtl`): its folder on stdout; a skip and why on stderr."""
    from benchmark.outputs.results import skip_reason

    folder, status = run_fn(cfg, force=force)
    if status == "skipped":
        why = skip_reason(folder)
        print(f"[{tag}] {folder} " + ("already holds this config's results; skipped (--force redoes it)"
                                      if why == "done" else f"is {why}; skipped"), file=sys.stderr)
    print(folder)
    return 0


def _models():
    """The multi-task architectures as model families of the continual run (`--architecture mmoe`), registered into
    the core's MODELS here, the one place that knows both; → the function, a Ray worker's setup."""
    from benchmark.mtl.continual import register_models

    register_models()
    return register_models


def cmd_run(argv) -> int:
    from benchmark.config import parse_config

    _models()
    cfg, ns = parse_config(argv)
    from benchmark.harness.run import run

    return _run_one("run", run, cfg, ns.force)


def cmd_batch(argv) -> int:
    from benchmark.config import CommandParser
    from benchmark.grid.executors import JOIN_TIMEOUT_S

    p = CommandParser(prog="hatswap batch", description="All runs of a profile; other flags go to every run.")
    p.add_argument("--profile", default="default")
    p.add_argument("--streams", help="comma-separated subset of the profile's streams")
    p.add_argument("--strategies", help="comma-separated subset of the profile's strategies")
    p.add_argument("--seeds", help="comma-separated seeds (default: the profile's)")
    p.add_argument("--force", action="store_true", help="redo runs whose results exist")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: one run after another in this process; ray: each run a Ray task (pip install "
                        "'hatswap[ray]')")
    p.add_argument("--ray-address", help="join this running Ray cluster (`auto`, `host:6379`, `ray://host:10001`) "
                   "instead of starting Ray on this machine")
    p.add_argument("--ray-timeout", type=float, default=JOIN_TIMEOUT_S,
                   help=f"Ray: seconds to wait for the cluster at --ray-address before giving up (at least 4; "
                        f"default {JOIN_TIMEOUT_S:g})")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs reserved per run (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="Ray: GPUs per run, fractional (0.25: four runs share a GPU; default 0)")
    p.add_argument("--ray-retries", type=int, default=2,
                   help="Ray: how often a run whose worker died is run again, resuming from its checkpoint (default 2)")
    ns, rest = p.parse_known_args(argv)
    ray_flags = ("--ray-timeout", "--cpus-per-run", "--gpus-per-run", "--ray-retries")
    if ns.executor == "local" and (ns.ray_address or any(a.split("=")[0] in ray_flags for a in argv)):
        raise UserError("--ray-address, --ray-timeout, --cpus-per-run, --gpus-per-run and --ray-retries apply to "
                        "--executor ray; add it or drop them")
    run_batch = _batch_runner().run_batch
    executor = None
    if ns.executor == "ray":
        from benchmark.grid.executors import RayExecutor

        executor = RayExecutor(ns.ray_address, ns.cpus_per_run, ns.gpus_per_run, join_timeout=ns.ray_timeout,
                               setup=_models(), retries=ns.ray_retries)
    return run_batch(ns.profile, rest, streams=_names(ns.streams, "--streams"),
                     strategies=_names(ns.strategies, "--strategies"), seeds=_int_list(ns.seeds),
                     force=ns.force, debug=ns.debug, executor=executor)


def cmd_mtl(argv) -> int:
    from benchmark.mtl.config import parse_mtl_config

    cfg, ns = parse_mtl_config(argv)
    from benchmark.mtl.run import run_mtl

    return _run_one("mtl", run_mtl, cfg, ns.force)


def cmd_pretrain(argv) -> int:
    """DINO self-supervised pretraining (benchmark/pretrain/): the weights file on stdout, for --backbone-weights."""
    from benchmark.pretrain.config import parse_pretrain_config

    cfg, ns = parse_pretrain_config(argv)
    from benchmark.pretrain.pipeline import pretrain

    weights, _ = pretrain(cfg, force=ns.force, reevaluate=ns.reevaluate)
    print(weights)
    return 0


def tune_parser():
    from benchmark.config import CommandParser
    from benchmark.grid.executors import JOIN_TIMEOUT_S

    p = CommandParser(prog="hatswap tune", description="Tune one strategy's arguments on the validation split of a "
                      "profile's stream (Optuna TPE + ASHA, in this process or on Ray Tune); other flags go to "
                      "every trial run. Writes benchmark/tuned/<profile>/<strategy>.json, which --tuned applies.")
    p.add_argument("--profile", required=True)
    p.add_argument("--strategy", required=True)
    p.add_argument("--stream", help="which of the profile's streams (default: its first)")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="the trials' run seed and the searcher's (default 0)")
    p.add_argument("--objective", choices=["acc", "acc-bwt"], default="acc",
                   help="validation ACC over the tasks seen (default), or ACC + BWT (forgetting costs)")
    p.add_argument("--protocol", choices=["joint", "continual"], default="joint",
                   help="joint: one search on every task's validation data; continual: Delange et al. 2021's "
                        "per-task search, which sees one task at a time")
    p.add_argument("--no-asha", dest="asha", action="store_false", help="run every trial to the end")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting Ray here (as `batch`)")
    p.add_argument("--ray-timeout", type=float, default=JOIN_TIMEOUT_S)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--out-dir", type=Path, default=Path("results"), help="the trials' runs go under OUT/tune/")
    p.add_argument("--record-dir", type=Path, help="write the record here instead of benchmark/tuned/")
    p.add_argument("--debug", action="store_true")
    return p


def cmd_tune(argv) -> int:
    """Hyperparameter search for one strategy on a profile's validation data (benchmark/tuning/); the record's path
    on stdout."""
    from benchmark.config import load_profile

    ns, rest = tune_parser().parse_known_args(argv)
    if ns.trials < 1:
        raise UserError(f"--trials must be at least 1, got {ns.trials}")
    if ns.executor == "local" and ns.ray_address:
        raise UserError("--ray-address applies to --executor ray; add it or drop --ray-address")
    given = {a.split("=")[0] for a in argv}
    joint_only = [f for f in ("--trials", "--objective", "--no-asha", "--executor") if f in given]
    if ns.protocol == "continual" and joint_only:
        raise UserError(f"{', '.join(joint_only)} belong to the joint search; --protocol continual runs FACIL's grid "
                        f"one candidate after another in this process: drop them")
    profile = load_profile(ns.profile)
    streams = profile.get("streams") or [profile.get("config", {}).get("stream", "binary_tasks")]
    if ns.stream and ns.stream not in streams:
        raise UserError(f"--stream {ns.stream} is not among profile {ns.profile}'s streams: {', '.join(streams)}")
    from benchmark.tuning.search import Tuning, need_tune_packages, tune

    _models()  # the tuned run's flags are parsed here; `hatswap tune` refuses another --architecture
    need_tune_packages()
    t = Tuning(ns.profile, ns.strategy, ns.stream or streams[0], trials=ns.trials, seed=ns.seed,
               objective=ns.objective, executor=ns.executor, asha=ns.asha, out_dir=ns.out_dir,
               record_dir=ns.record_dir, run_args=rest,
               ray={"address": ns.ray_address, "cpus_per_trial": ns.cpus_per_trial,
                    "gpus_per_trial": ns.gpus_per_trial, "join_timeout": ns.ray_timeout})
    if ns.protocol == "continual":
        from benchmark.tuning.continual import tune_continual

        print(tune_continual(t))
    else:
        from benchmark.tuning.search import local_search as search

        if ns.executor == "ray":
            from benchmark.tuning.ray_search import ray_search as search
        print(tune(t, search))
    return 0


def _registries() -> list:
    """Every registry whose entries a command chooses by name: the continual run's, then the multi-task run's."""
    from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES, TASK_SETS, WEIGHTINGS
    from benchmark.registry import BACKBONES, SOURCES, STRATEGIES, STREAMS

    return [STREAMS, SOURCES, BACKBONES, STRATEGIES, TASK_SETS, ARCHITECTURES, WEIGHTINGS, SCHEDULES]


def entry_flags_help(name: str) -> str:
    """The namespaced flags (`--ewc.ewc-lambda`, with defaults, as `--help` shows them) of every entry called
    `name`, in whichever registry holds it; a combination (`lwf+replay`) lists each part's."""
    import argparse
    from difflib import get_close_matches

    from benchmark.config import CommandParser, add_fields

    sections = []
    for reg in _registries():
        if name not in reg.names() and not ("+" in name and reg.compose):
            continue
        entry = reg.get(name)
        for part in entry.parts or (entry,):
            if part.config_cls is None:
                sections.append(f"{reg.kind} {part.name}: no flags of its own")
                continue
            parser = CommandParser(prog="hatswap list", usage=argparse.SUPPRESS, add_help=False)
            add_fields(parser.add_argument_group(f"{reg.kind} {part.name}"), part.config_cls, prefix=f"{part.name}.")
            sections.append(parser.format_help().strip("\n"))
    if not sections:
        close = get_close_matches(name, [n for reg in _registries() for n in reg.names()])
        raise UserError(f"no stream, source, backbone, strategy or multi-task entry is called {name!r}"
                        f"{'; close: ' + ', '.join(close) if close else ''} (`hatswap list` names them all)")
    return "\n\n".join(sections)


def cmd_list(argv) -> int:
    from benchmark.config import PROFILE_DIR, CommandParser
    from benchmark.registry import BACKBONES, SOURCES, STRATEGIES, STREAMS

    p = CommandParser(prog="hatswap list", description="Every stream, source, backbone, strategy, multi-task entry "
                      "and profile by name.")
    p.add_argument("--flags", metavar="NAME", help="list the flags of the entry NAME (e.g. ewc, lwf+replay, "
                   "binary_tasks) instead, with their defaults")
    p.add_argument("--figure", metavar="DIR", type=Path, nargs="?", const=Path("figures"),
                   help="draw the models instead (default DIR: figures): the Hat Swap network as `hatswap run` "
                        "builds it (default profile) and every multi-task architecture as `hatswap mtl` builds it "
                        "(mtl profile), each traced by torchview: DIR/NAME.gv, and DIR/NAME.svg where Graphviz's "
                        "`dot` is installed")
    p.add_argument("--architecture", metavar="NAMES", help="with --figure: only these (comma-separated; "
                   "hatswap_net or a multi-task architecture)")
    ns = p.parse_args(argv)
    if ns.architecture is not None and ns.figure is None:
        raise UserError("--architecture applies to --figure: add --figure [DIR], or drop --architecture")
    if ns.figure is not None:
        return _figures(ns.figure, _names(ns.architecture, "--architecture"))
    if ns.flags:
        print(entry_flags_help(ns.flags))
        return 0
    for title, reg in (("streams", STREAMS), ("sources", SOURCES), ("backbones", BACKBONES),
                       ("strategies", STRATEGIES)):
        print(f"{title}: {', '.join(reg.names())}")
    print(f"strategies that combine with '+' (e.g. lwf+replay): {', '.join(STRATEGIES.composable())}")
    from benchmark.registry import MODELS

    _models()
    print(f"architectures (--architecture; on a multi-task one, every strategy but progressive; group-lasso refused): "
          f"{', '.join(MODELS.names())}")
    task_il_only = [n for n in STRATEGIES.names() if "class-il" not in STRATEGIES.get(n).meta.scenarios]
    print(f"scenarios (--scenario): task-il (every stream, every strategy); class-il and domain-il (streams of "
          f"class-label tasks: binary_tasks, split_classes, permuted, rotated; every strategy but "
          f"{', '.join(task_il_only)})")
    print("dense_suite sources: fmnist_scenes (offline), real (VOC2012 seg, COCO 2017 det, Imagenette-160 cls)")
    from benchmark.mtl.registries import ARCHITECTURES, SCHEDULES, TASK_SETS, WEIGHTINGS

    for title, reg in (("mtl task sets", TASK_SETS), ("mtl architectures", ARCHITECTURES),
                       ("mtl weightings", WEIGHTINGS), ("mtl schedules", SCHEDULES)):
        print(f"{title}: {', '.join(reg.names())}")
    print(f"profiles: {', '.join(sorted(p.stem for p in PROFILE_DIR.glob('*.json')))}")
    return 0


def _figures(out_dir: Path, names: list[str] | None) -> int:
    """`hatswap list --figure`: the model figures (benchmark/diagnostics/model_figure.py), the multi-task ones built
    by benchmark/mtl/figure.py (wired here: the core never imports mtl/); the files on stdout."""
    from difflib import get_close_matches

    from benchmark.config import parse_config
    from benchmark.diagnostics.model_figure import hatswap_drawing, render_hint, write_figure
    from benchmark.mtl.figure import architecture_drawing, architecture_names
    from benchmark.registry import DEFAULT_MODEL

    known = [DEFAULT_MODEL, *architecture_names()]
    for name in names or []:
        if name not in known:
            close = get_close_matches(name, known)
            raise UserError(f"--architecture {name!r} has no figure{'; close: ' + ', '.join(close) if close else ''}"
                            f" (known: {', '.join(known)})")
    for name in names or known:
        drawing = hatswap_drawing(parse_config(["--profile", "default"])[0]) if name == DEFAULT_MODEL \
            else architecture_drawing(name)
        for path in write_figure(drawing, out_dir):
            print(path)
    if hint := render_hint(out_dir):
        print(f"hatswap list: {hint}", file=sys.stderr)
    return 0


def cmd_report(argv) -> int:
    from benchmark.config import CommandParser

    p = CommandParser(prog="hatswap report", description="Rebuild the tables (CSV, Markdown, LaTeX), figures and "
                      "REPORT.md from DIR/runs/ (continual runs), and the multi-task report from DIR/mtl/runs/.")
    p.add_argument("dir", type=Path, nargs="?", default=Path("results"))
    p.add_argument("--out", type=Path, help="write the report here instead of DIR (e.g. results/reference)")
    ns = p.parse_args(argv)
    for table in _batch_runner().rebuild_reports(ns.dir, out_dir=ns.out):
        print(table)
    return 0


def cmd_evaluate(argv) -> int:
    """A saved model's R row again (benchmark/harness/reevaluate.py)."""
    from benchmark.harness.reevaluate import cmd_evaluate as evaluate

    _models()  # a run of a multi-task architecture (`--architecture mmoe`) rebuilds through MODELS
    return evaluate(argv)


def _batch_runner():
    """benchmark.grid.batch, with every kind of batch registered: the core's continual one and the multi-task one, and
    every profile step: a profile's "pretrain" section (the entry point is the one place that knows them all)."""
    import benchmark.grid.batch
    import benchmark.mtl.batch  # noqa: F401  (registers the `mtl` grid kind)
    import benchmark.pretrain.batch  # noqa: F401  (registers the "pretrain" weights step)

    _models()
    return benchmark.grid.batch


COMMANDS = {"run": cmd_run, "batch": cmd_batch, "mtl": cmd_mtl, "pretrain": cmd_pretrain, "tune": cmd_tune,
            "list": cmd_list, "report": cmd_report, "evaluate": cmd_evaluate}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"hatswap: error: unknown command {argv[0]!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        print(f"usage: hatswap {{{','.join(COMMANDS)}}} ...  (`hatswap COMMAND --help` for its flags)")
        return 0 if argv else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (UserError, RunFailed) as e:
        if debug:
            raise
        print(f"hatswap: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # a bug or a library failure: still one line; --debug shows where
        if debug:
            raise
        if isinstance(e, OSError) and e.errno in UNWRITABLE:  # a write the commands do not name themselves
            print(f"hatswap: error: cannot write {e.filename or 'a file'}: {e.strerror}; free space there, or point "
                  f"--out-dir / --cache-dir elsewhere", file=sys.stderr)
            return UserError.exit_code
        print(f"hatswap: error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("hatswap: interrupted; completed runs are kept, rerun to resume", file=sys.stderr)
        return 130
