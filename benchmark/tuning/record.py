"""Tuned arguments as a record: benchmark/tuned/<profile>/<strategy>.json holds the best arguments and their
validation score, every trial (arguments, score, how far it ran), the search space with its sources, the searcher,
the scheduler, the objective, the protocol, the seed and the commit. `hatswap run|batch --tuned` (or a profile's
`"tuned": true`, or `"tuned": "<profile>"` for another profile's records; `"tuned_protocol": "continual"` for the
continual protocol's `<strategy>.continual.json`) applies the best arguments as a config layer above the profile's
values; `--tuned-from FILE` applies one record file. The run's config.json names the
record in `tuned_from`."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.errors import UserError, read_json_object

TUNED_DIR = Path(__file__).resolve().parent.parent / "tuned"
REPO = TUNED_DIR.parent.parent


def record_path(profile: str, strategy: str, root: Path | None = None) -> Path:
    return Path(root or TUNED_DIR) / profile / f"{strategy}.json"


def shown(path: Path) -> str:
    """A record's path as config.json states it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def read_record(path: Path, strategy: str | None = None) -> dict:
    """A record file, checked: it parses, holds best arguments, and (given `strategy`) is that strategy's."""
    path = Path(path)
    record = read_json_object(path, f"tuned arguments {path}")
    if not isinstance(record.get("best"), dict) or not isinstance(record["best"].get("params"), dict):
        raise UserError(f"{path} is not a tuned-arguments record (no best.params); make one with `hatswap tune`")
    if strategy and record.get("strategy") != strategy:
        raise UserError(f"{path} holds --strategy {record.get('strategy')}'s tuned arguments, not {strategy}'s")
    return record


def _flag_given(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def tuned_layers(ns, profile: dict, argv: list[str]) -> list[tuple[dict, str]]:
    """The config layer of a run's tuned arguments, if it asks for them ([] if not): `--tuned-from FILE`, or
    `--tuned` / the profile's `"tuned"` → benchmark/tuned/<profile>/<strategy>.json."""
    wanted = _flag_given(argv, "--tuned-from") or _flag_given(argv, "--tuned_from")
    own = profile.get("tuned")
    if not wanted and not ns.tuned and not own:
        return []
    strategy = _flag_given(argv, "--strategy") or profile.get("config", {}).get("strategy", ns.strategy)
    if wanted:
        path = Path(wanted)
    else:
        if not ns.profile:
            raise UserError("--tuned applies a profile's tuned arguments: add --profile, or pass --tuned-from FILE")
        suffix = ".continual" if profile.get("tuned_protocol") == "continual" else ""
        path = record_path(own if isinstance(own, str) else ns.profile, strategy + suffix)
        if not path.is_file():
            raise UserError(f"no tuned arguments for --strategy {strategy} in profile "
                            f"{own if isinstance(own, str) else ns.profile} ({path}); make them with `hatswap tune "
                            f"--profile {own if isinstance(own, str) else ns.profile} --strategy {strategy}`, or "
                            f"drop --tuned")
    record = read_record(path, strategy)
    stream = _flag_given(argv, "--stream") or profile.get("config", {}).get("stream") or \
        (profile.get("streams") or [ns.stream])[0]
    if record.get("stream") and record["stream"] != stream:
        raise UserError(f"{path} was tuned on stream {record['stream']}, not {stream}; tune this stream, or drop "
                        f"--tuned")
    params = record["best"]["params"]
    if record["best"].get("per_experience"):  # the continual protocol's: the config states experience 0's values
        if given := [k for k in params if _flag_given(argv, f"--{k}") or _flag_given(argv, _dashed(k))]:
            raise UserError(f"{path} sets {', '.join(given)} experience by experience, which a flag cannot "
                            f"override; drop the flag or --tuned")
        params = {k: v[0] for k, v in params.items()}
    return [(dict(params) | {"tuned_from": shown(path)}, f"tuned arguments {path}")]


def _dashed(key: str) -> str:
    name, dot, knob = key.rpartition(".")
    return f"--{name}{dot}{knob.replace('_', '-')}"


def canonical(tuned_from: str) -> str:
    """A record's path as config.json states it: a relative path is the current directory's if it exists there,
    else the repository's; inside the repository it is written relative to it."""
    path = Path(tuned_from)
    if not path.is_absolute():
        path = path if path.exists() else REPO / path
    return shown(path)


def experience_plugins(cfg) -> list:
    """A run whose tuned arguments are per experience (`hatswap tune --protocol continual`): the plugin that sets
    each experience's values ([] for any other run)."""
    if not cfg.tuned_from:
        return []
    path = Path(cfg.tuned_from)
    record = read_record(path if path.is_absolute() else REPO / path, cfg.strategy)  # canonical already
    if not record["best"].get("per_experience"):
        return []
    from benchmark.tuning.experience_knobs import ExperienceKnobs

    params = record["best"]["params"]
    n = len(next(iter(params.values())))
    return [ExperienceKnobs([{k: v[i] for k, v in params.items()} for i in range(n)])]


def write_record(path: Path, record: dict) -> None:
    from benchmark.outputs.results import atomic_write

    atomic_write(Path(path), json.dumps(record, indent=2, sort_keys=False) + "\n")
