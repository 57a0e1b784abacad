"""Tuning (`hatswap tune`, benchmark/tuning/): validation splits that never read a test image, the declared search
spaces, the objective, the search on both engines with its record, resuming after kill -9, `--tuned`, and the
continual protocol's rules (Delange et al. 2021, as FACIL)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.registry import STRATEGIES, STREAMS
from benchmark.streams.binary_tasks import held_out
from benchmark.tuning import continual
from benchmark.tuning.experience_knobs import ExperienceKnobs
from benchmark.tuning.space import search_space
from benchmark.tuning.trial import objective_value
from tests.conftest import tiny_args
from tests.test_tracking import no_wandb_env  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parent.parent
STREAM_CONFIGS = {"binary_tasks": {}, "split_classes": {}, "permuted": {"tasks": 2}, "rotated": {"tasks": 2}}


@pytest.fixture
def test_reads(monkeypatch) -> list:
    """Every source split a stream loads, as (source, train?): the one place any stream reads images from."""
    from benchmark.streams import binary_tasks

    calls, real = [], binary_tasks.load_source

    def spy(source, root, train, *args):
        calls.append((source, train))
        return real(source, root, train, *args)

    monkeypatch.setattr(binary_tasks, "load_source", spy)
    return calls


@pytest.fixture(scope="module")
def poisoned_root(tmp_path_factory, fmnist_root) -> Path:
    """The fixture Fashion-MNIST whose test images are poisoned (every pixel 255, a valid file): a tuning that read
    them would train or score on blank images."""
    root = tmp_path_factory.mktemp("poisoned-test")
    shutil.copytree(fmnist_root / "FashionMNIST", root / "FashionMNIST")
    images = root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(data[:16] + b"\xff" * (len(data) - 16))
    return root


def _build(name: str, root: Path, split: str, seed: int = 0, fraction: float = 0.2):
    cfg = STREAMS.get(name).config_cls(eval_split=split, val_fraction=fraction, train_per_task=0, test_per_task=0,
                                       **STREAM_CONFIGS[name])
    return STREAMS.get(name).build(cfg, seed=seed, data_root=root, download=False, apt_install=False)


@pytest.mark.parametrize("name", sorted(STREAM_CONFIGS))
def test_the_validation_split_is_held_out_training_images_and_reads_no_test_image(name, fmnist_root, test_reads):
    bench = _build(name, fmnist_root, "val")
    assert test_reads and all(train for _, train in test_reads)  # only the training split was loaded
    train, val = bench.frames["train"], bench.frames["test"]
    for t in range(len(bench.tasks)):
        tr, va = set(train[train.task_id == t]["index"]), set(val[val.task_id == t]["index"])
        assert tr and va and not tr & va  # disjoint, both non-empty
    assert bench.provenance["test"]["split"] == "val" and bench.provenance["test"]["held_out_fraction"] == 0.2
    _build(name, fmnist_root, "test")
    assert (test_reads[-1][1], test_reads[-2][1]) == (False, True)  # the spy sees a test read when there is one


def test_held_out_is_class_stratified_seeded_and_its_own_draw():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    mask = held_out(labels, 0.1, seed=3)
    assert [int(mask[labels == c].sum()) for c in range(4)] == [10, 5, 3, 2]
    assert (mask == held_out(labels, 0.1, seed=3)).all() and (mask != held_out(labels, 0.1, seed=4)).any()


def test_the_test_split_is_unchanged_by_the_validation_options(fmnist_root):
    a = _build("binary_tasks", fmnist_root, "test", fraction=0.2)
    b = _build("binary_tasks", fmnist_root, "test", fraction=0.5)
    assert a.frames["train"].equals(b.frames["train"]) and a.frames["test"].equals(b.frames["test"])


@pytest.mark.parametrize("bad", ["0", "1", "1.5"])
def test_a_validation_fraction_outside_zero_one_is_one_error(bad, tiny, capsys):
    assert main(["run", *tiny("--binary_tasks.val-fraction", bad)]) == 2
    assert "--binary_tasks.val-fraction" in capsys.readouterr().err


def test_every_declared_range_is_sourced_and_parses_as_its_flag():
    for name in STRATEGIES.names():
        for key, dist in search_space(name).items():
            assert dist.source and (dist.choices or 0 < dist.low < dist.high or dist.kind == "uniform"), key
            value = dist.top()
            cfg, _ = parse_config(["--strategy", name, f"--{key}", str(value),
                                   *STRATEGIES.get(name).meta.required_flags()])
            got = cfg.lr if key == "lr" else getattr(cfg.strategy_args, key.partition(".")[2])
            assert got == value
    assert set(search_space("ewc")) == {"lr", "ewc.ewc_lambda"}
    assert search_space("ewc")["ewc.ewc_lambda"].describe()["low"] == 1 and search_space("naive").keys() == {"lr"}
    assert {"lwf.alpha", "replay.batch_size_mem"} <= set(search_space("lwf+replay"))


def test_the_objectives_by_hand():
    rows = [[0.9, 0.5, 0.5], [0.7, 0.8, 0.5], [0.6, 0.7, 0.9]]
    assert objective_value(rows[:1], "acc", [1]) == pytest.approx(0.9)
    assert objective_value(rows[:2], "acc", [1, 2]) == pytest.approx(0.75)
    assert objective_value(rows[:2], "acc-bwt", [1, 2]) == pytest.approx(0.75 + (0.7 - 0.9))
    assert objective_value(rows, "acc-bwt", [1, 2, 3]) == pytest.approx(
        (0.6 + 0.7 + 0.9) / 3 + ((0.6 - 0.9) + (0.7 - 0.8)) / 2)
    assert objective_value([[0.6, 0.8, 1.0]], "acc-bwt", [3]) == pytest.approx(0.8)  # joint: all seen, no BWT
    assert objective_value(rows, "acc", [1, 2, 3], baseline=True) == pytest.approx((0.9 + 0.8 + 0.9) / 3)  # diagonal


def _tune(tmp_path, root, *extra) -> list[str]:
    return ["tune", "--profile", "smoke", "--strategy", "ewc", "--out-dir", str(tmp_path / "out"), "--record-dir",
            str(tmp_path / "rec"), "--data-root", str(root), "--no-download", "--no-apt-install",
            "--binary_tasks.val-fraction", "0.3", *extra]


def _check_record(path: Path, trials: int) -> dict:
    record = json.loads(path.read_text())
    assert record["strategy"] == "ewc" and record["eval_split"] == "val" and record["objective"] == "acc"
    assert len(record["trials"]) == trials and record["trials_finished"] + record["trials_failed"] == trials
    complete = [x for x in record["trials"] if x["state"] == "complete"]
    assert record["best"]["score"] == max(x["score"] for x in complete)
    assert record["space"]["ewc.ewc_lambda"]["kind"] == "log-uniform" and record["space"]["lr"]["source"]
    assert record["searcher"]["name"] == "optuna TPE" and record["git"]["commit"]
    for x in record["trials"]:
        assert 1e-4 <= x["params"]["lr"] <= 1e-2 and 1 <= x["params"]["ewc.ewc_lambda"] <= 1e6
    return record


def test_tune_locally_on_validation_data_only(tmp_path, poisoned_root, capsys, test_reads):
    assert main(_tune(tmp_path, poisoned_root, "--trials", "4")) == 0
    assert test_reads and all(train for _, train in test_reads)  # no trial loaded the test split
    out, err = capsys.readouterr()
    record = _check_record(Path(out.strip()), 4)
    assert len([ln for ln in err.splitlines() if ln.startswith("[tune] trial ")]) == 4  # one line per trial
    configs = list((tmp_path / "out").rglob("config.json"))
    assert configs and all(json.loads(c.read_text())["config"]["binary_tasks.eval_split"] == "val" for c in configs)
    # the record applies: --tuned-from sets the best arguments and names the record in config.json
    assert main(["run", *tiny_args(tmp_path / "applied", poisoned_root, "--strategy", "ewc",
                                   "--binary_tasks.eval-split", "val", "--tuned-from", out.strip())]) == 0
    cfg = json.loads(next((tmp_path / "applied").rglob("config.json")).read_text())["config"]
    assert cfg["lr"] == record["best"]["params"]["lr"] and cfg["tuned_from"] == out.strip()
    assert cfg["ewc.ewc_lambda"] == record["best"]["params"]["ewc.ewc_lambda"]


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, fmnist_root, monkeypatch, capsys):
    from benchmark.tuning import search

    real, calls = search.run_trial, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(search, "run_trial", flaky)
    assert main(_tune(tmp_path, fmnist_root, "--trials", "3", "--no-asha")) == 0
    record = json.loads(Path(capsys.readouterr().out.strip()).read_text())
    assert [x["state"] for x in record["trials"]] == ["complete", "failed", "complete"]
    assert record["trials"][1]["error"] == "RuntimeError: worker lost" and record["trials_failed"] == 1


def test_a_tuning_folder_refuses_a_different_search(tmp_path, fmnist_root, capsys):
    assert main(_tune(tmp_path, fmnist_root, "--trials", "1", "--no-asha")) == 0
    assert main(_tune(tmp_path, fmnist_root, "--trials", "1", "--no-asha", "--objective", "acc-bwt")) == 2
    err = capsys.readouterr().err
    assert "differs in objective" in err and "another --out-dir" in err


def test_a_per_experience_record_refuses_a_flag_for_its_knobs_and_another_stream(tmp_path, tiny):
    path = tmp_path / "ewc.continual.json"
    path.write_text(json.dumps({"strategy": "ewc", "stream": "binary_tasks", "best": {
        "params": {"lr": [0.002, 0.001], "ewc.ewc_lambda": [1e4, 5e3]}, "per_experience": True}}))
    cfg, _ = parse_config(tiny("--strategy", "ewc", "--tuned-from", str(path)))
    assert (cfg.lr, cfg.strategy_args.ewc_lambda) == (0.002, 1e4)  # config.json states experience 0's
    with pytest.raises(UserError, match="sets lr experience by experience"):
        parse_config(tiny("--strategy", "ewc", "--tuned-from", str(path), "--lr", "0.01"))
    with pytest.raises(UserError, match="tuned on stream binary_tasks, not split_classes"):
        parse_config(tiny("--strategy", "ewc", "--tuned-from", str(path), "--stream", "split_classes"))


def test_results_written_before_the_new_options_are_the_same_config(tiny):
    from benchmark.outputs.results import existing_status

    folder, _ = __import__("benchmark.harness.run", fromlist=["run"]).run(parse_config(tiny("--strategy", "naive"))[0])
    record = json.loads((folder / "config.json").read_text())
    for key in ("binary_tasks.eval_split", "binary_tasks.val_fraction", "tuned_from", "wandb_group"):
        del record["config"][key]  # as a run written before them has it
    (folder / "config.json").write_text(json.dumps(record))
    assert existing_status(folder, parse_config(tiny("--strategy", "naive"))[0].to_dict())[0] == "same"


def test_tuned_applies_the_profiles_record_and_says_how_to_make_a_missing_one(tmp_path, tiny, capsys, monkeypatch):
    from benchmark.tuning import record as rec

    monkeypatch.setattr(rec, "TUNED_DIR", tmp_path / "tuned")
    assert main(["run", *tiny("--strategy", "lwf", "--tuned")]) == 2
    assert "hatswap tune --profile smoke --strategy lwf" in capsys.readouterr().err
    path = tmp_path / "tuned" / "smoke" / "lwf.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"strategy": "lwf", "best": {"params": {"lr": 0.004, "lwf.alpha": 3.5}}}))
    cfg, _ = parse_config(tiny("--strategy", "lwf", "--tuned"))
    assert (cfg.lr, cfg.strategy_args.alpha, cfg.tuned_from) == (0.004, 3.5, str(path.resolve()))
    cfg, _ = parse_config(tiny("--strategy", "lwf", "--tuned", "--lr", "0.002"))  # a flag still wins
    assert cfg.lr == 0.002
    with pytest.raises(UserError, match="lwf's tuned arguments, not ewc's"):
        parse_config(tiny("--strategy", "ewc", "--tuned-from", str(path)))


def test_without_ray_tune_or_optuna_tune_is_one_line_naming_the_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    assert main(["tune", "--profile", "smoke", "--strategy", "ewc", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[tune]'" in err[0]


def _trial_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("[tune] trial ") and "interrupted" not in ln]


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])  # ray: ~1 min
def test_a_killed_search_resumes_without_redoing_finished_trials(executor, tmp_path, poisoned_root):
    """kill -9 once the first trial has finished; the same command finishes the search."""
    argv = [sys.executable, "-m", "benchmark", *_tune(tmp_path, poisoned_root, "--trials", "4", "--executor",
                                                      executor, "--epochs", "12")]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    log = tmp_path / "first.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and len(_trial_lines(log.read_text())) < 1 and proc.poll() is None:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = _trial_lines(log.read_text())
    assert 1 <= len(first) < 4, log.read_text()[-2000:]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    second = _trial_lines(done.stderr)
    assert len(second) == 4 - len(first)  # only the unfinished ones ran
    record = _check_record(Path(done.stdout.strip()), 4)
    ids = [x.get("trial_id", x["number"]) for x in record["trials"]]
    assert len(set(ids)) == 4 and len({json.dumps(x["params"], sort_keys=True) for x in record["trials"]}) == 4


class _Plugin:
    def __init__(self, cfg):
        self.cfg = cfg


def test_experience_knobs_set_each_experiences_lr_and_stability_knob():
    from benchmark.harness.harness_plugins import CosineLR
    from strategies.ewc import EWCConfig
    from strategies.mas import MASConfig

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam([{"params": [model.weight], "lr": 2e-3}, {"params": [model.bias], "lr": 1e-3}], lr=1e-3)
    schedule = CosineLR()
    schedule.base = [1.0, 1.0]  # a stale base from an earlier experience: it must be re-read
    other = _Plugin(MASConfig())  # a knob of the same name elsewhere (mas.alpha) is never touched
    strategy = type("S", (), {"optimizer": opt, "plugins": [_Plugin(EWCConfig()), other, schedule]})()
    knobs = ExperienceKnobs([{"lr": 0.01, "ewc.ewc_lambda": 100.0}, {"lr": 0.004, "ewc.ewc_lambda": 5.0}])
    seen = []
    for _ in range(3):  # past the schedule's end, its last values stay
        knobs.before_training_exp(strategy)
        seen.append(([g["lr"] for g in opt.param_groups], strategy.plugins[0].cfg.ewc_lambda))
        knobs.after_training_exp(strategy)
    assert seen[0] == ([pytest.approx(0.02), pytest.approx(0.01)], 100.0)  # the groups' ratio kept
    assert seen[1] == seen[2] == ([pytest.approx(0.008), pytest.approx(0.004)], 5.0)
    assert schedule.base is None and opt.param_groups[1]["initial_lr"] == pytest.approx(0.004)
    assert other.cfg == MASConfig()


def test_the_continual_protocol_follows_facils_rules(tmp_path, monkeypatch, fmnist_root):
    """Hand-made validation accuracies: lr by maximal plasticity (first experience: LR_FIRST; later: the 3 largest
    of LR below the first's choice), then the stability knob halved from FACIL's start until the new task's
    accuracy is within 20 % of the plastic one."""
    calls = []

    def fake_prefix(t, schedule, k, horizon, tag, final=False):
        values = schedule[k]
        calls.append((k, dict(values)))
        if values["ewc.ewc_lambda"] == 0.0:  # fine-tuning: plasticity peaks at 2e-3 (exp 0) / 1e-3 (later)
            return {0.002: 0.9, 0.001: 0.8 if k == 0 else 0.95}.get(values["lr"], 0.5)
        return 0.95 if values["ewc.ewc_lambda"] <= 1e4 / 8 else 0.5  # 3 halvings needed
    monkeypatch.setattr(continual, "prefix_score", fake_prefix)
    monkeypatch.setattr(continual, "stream_length", lambda t: (3, None))
    from benchmark.tuning.search import Tuning

    t = Tuning("smoke", "ewc", "binary_tasks", out_dir=tmp_path, record_dir=tmp_path / "rec")
    path = continual.tune_continual(t)
    record = json.loads(Path(path).read_text())
    assert record["best"]["params"] == {"lr": [0.002, 0.001, 0.001], "ewc.ewc_lambda": [1e4, 1250.0, 1250.0]}
    later_lrs = sorted({v["lr"] for k, v in calls if k == 1 and v["ewc.ewc_lambda"] == 0.0}, reverse=True)
    assert later_lrs == [0.001, 0.0002, 0.0001]  # below the first experience's 2e-3
    tries = record["experiences"][1]["stability"]
    assert [x["value"] for x in tries] == [1e4, 5e3, 2500.0, 1250.0] and record["experiences"][0]["stability"] == []


def test_the_continual_protocol_keeps_the_seventh_halving_when_every_try_fails(tmp_path, monkeypatch):
    calls = []

    def never_stable(t, schedule, k, horizon, tag, final=False):
        calls.append(tag)
        return 0.9 if schedule[k]["ewc.ewc_lambda"] == 0.0 else 0.1
    monkeypatch.setattr(continual, "prefix_score", never_stable)
    monkeypatch.setattr(continual, "stream_length", lambda t: (2, None))
    from benchmark.tuning.search import Tuning

    record = json.loads(Path(continual.tune_continual(Tuning("smoke", "ewc", "binary_tasks", out_dir=tmp_path,
                                                                   record_dir=tmp_path / "rec"))).read_text())
    assert len(record["experiences"][1]["stability"]) == 7  # FACIL's max_num_searches
    assert record["best"]["params"]["ewc.ewc_lambda"] == [1e4, 1e4 / 2**7]  # halved after the 7th failure too


@pytest.mark.parametrize("strategy, why", [("joint", "use --protocol joint"), ("der", "its 0 is not fine-tuning"),
                                           ("gem", "its 0 is not fine-tuning")])
def test_the_continual_protocol_refuses_what_it_cannot_tune(strategy, why, tmp_path):
    from benchmark.tuning.search import Tuning

    with pytest.raises(UserError, match="--protocol joint"):
        continual.tune_continual(Tuning("smoke", strategy, "binary_tasks", out_dir=tmp_path))


def test_the_continual_protocol_refuses_the_joint_searchs_flags(capsys):
    assert main(["tune", "--profile", "smoke", "--strategy", "ewc", "--protocol", "continual", "--trials", "4"]) == 2
    assert "--trials belong to the joint search" in capsys.readouterr().err


@pytest.mark.usefixtures("no_wandb_env")
def test_each_trial_is_a_wandb_run_in_the_tunings_group_beside_a_summary_run(tmp_path, fmnist_root):
    from tests.wandb_records import read_run

    assert main(_tune(tmp_path, fmnist_root, "--trials", "2", "--no-asha", "--wandb", "offline")) == 0
    runs = [read_run(d) for d in sorted((tmp_path / "out").rglob("offline-run-*"))]
    trials = [r for r in runs if "wandb_group" in r["config"]]  # a run config; the summary holds the record
    (summary,) = [r for r in runs if r["config"].get("objective") == "acc"]
    assert len(trials) == 2 and {r["config"]["wandb_group"] for r in trials} == {"tune-smoke-ewc"}
    assert all(r["config"]["binary_tasks.eval_split"] == "val" for r in trials)
    assert summary["summary"]["trials/_type"] == "table-file" and summary["summary"]["trials/nrows"] == 2
    record = json.loads((tmp_path / "rec" / "smoke" / "ewc.json").read_text())
    assert summary["summary"]["best_score"] == pytest.approx(record["best"]["score"])


TUNED = REPO / "benchmark" / "tuned"


@pytest.mark.parametrize("path", sorted(TUNED.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_committed_record_holds_its_search_and_applies(path):
    record = json.loads(path.read_text())
    strategy = path.name.removesuffix(".json").removesuffix(".continual")
    assert record["strategy"] == strategy and record["eval_split"] == "val" and record["profile"] == path.parent.name
    space, best = search_space(strategy), record["best"]["params"]
    assert set(best) <= set(space) and set(best) <= set(record["space"])
    for key, value in best.items():
        for v in value if record["best"].get("per_experience") else [value]:
            d = space[key]
            assert v in d.choices if d.kind == "choice" else d.low <= v <= d.high, (key, v)
    if not record["best"].get("per_experience"):
        assert len(record["trials"]) == record["trials_requested"]
        complete = [x for x in record["trials"] if x["state"] == "complete"]
        assert record["best"]["score"] == max(x["score"] for x in complete)
    cfg, _ = parse_config(["--profile", record["profile"], "--strategy", strategy, "--tuned-from", str(path)])
    first = {k: v[0] if record["best"].get("per_experience") else v for k, v in best.items()}
    assert cfg.to_dict() | first == cfg.to_dict() and cfg.tuned_from == str(path.relative_to(REPO))


@pytest.mark.parametrize("profile", ["zoo-tuned", "zoo-tuned-continual"])
def test_the_tuned_zoo_profiles_apply_a_record_to_every_strategy(profile):
    spec = json.loads((REPO / "benchmark" / "profiles" / f"{profile}.json").read_text())
    suffix = ".continual" if spec.get("tuned_protocol") == "continual" else ""
    for strategy in spec["strategies"]:
        cfg, _ = parse_config(["--profile", profile, "--strategy", strategy])
        assert cfg.tuned_from == f"benchmark/tuned/zoo/{strategy}{suffix}.json"


def test_compare_profiles_pairs_two_batches_by_seed(tmp_path, fmnist_root):
    from benchmark.outputs.report import collect
    from scripts.compare_profiles import compare

    for name, lr in (("a", "0.005"), ("b", "0.02")):
        assert main(["batch", *tiny_args(tmp_path / name, fmnist_root, "--strategies", "naive", "--seeds", "0,1",
                                         "--lr", lr)]) == 0
    a, b = collect(tmp_path / "a"), collect(tmp_path / "b")
    diff = (b.set_index("seed").acc - a.set_index("seed").acc).mean()
    table = compare(tmp_path / "a", tmp_path / "b", ("defaults", "tuned"), ["acc"])
    (row,) = [ln for ln in table.splitlines() if ln.startswith("| binary_tasks | naive |")]
    cells = [c.strip() for c in row.split("|")]
    assert cells[3:6] == [f"{a.acc.mean():+.3f}", f"{b.acc.mean():+.3f}", cells[5]]
    assert cells[5].startswith(f"{diff:+.3f} [") and "paired t (n=2)" in cells[6]


def test_a_tuning_on_another_architecture_is_refused_before_its_folder_is_claimed(tmp_path, fmnist_root, capsys):
    """A record is per profile and strategy and applies to the Hat Swap network (`--tuned`): a search on an MMoE model
    would overwrite it with arguments tuned for another model."""
    assert main(_tune(tmp_path, fmnist_root, "--trials", "1", "--no-asha", "--architecture", "mmoe", "--hidden",
                      "8")) == 2
    assert "has no tuning records yet: drop --architecture" in capsys.readouterr().err
    assert not list(tmp_path.rglob("search*.json")) and not list(tmp_path.rglob("*.db"))
