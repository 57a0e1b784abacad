"""--save-model, benchmark.load_run and `hatswap evaluate` (benchmark/harness/model_export.py, reevaluate.py): the
saved file round-trips, the loaded model predicts exactly as the trained one did, its re-evaluation prints the run's
final R row, and a missing or edited model is one line naming the fix. Smoke-profile runs of about a second."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from avalanche.core import SupervisedPlugin
from safetensors.torch import load_file, save_file

import benchmark
from benchmark.cli import main
from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.model_export import deployed, rebuild
from benchmark.harness.reevaluate import on_split
from benchmark.harness.run import run
from benchmark.outputs.results import existing_status
from tests.test_cli import error_line


class FinalPredictions(SupervisedPlugin):
    """After each experience (the last one's stays): the trained network's outputs on fixed inputs, per task, in eval
    mode, and its weights."""

    def __init__(self, x: torch.Tensor, tasks: int):
        super().__init__()
        self.x, self.tasks, self.outputs, self.state = x, tasks, {}, {}

    def after_training_exp(self, strategy, **kwargs):
        net = strategy.model
        net.eval()
        with torch.no_grad():
            self.outputs = {t: net(self.x, torch.full((len(self.x),), t)).clone() for t in range(self.tasks)}
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.train()


def run_folder(out: Path) -> Path:
    return next((out / "runs").rglob("matrix.csv")).parent


def test_saved_model_round_trips_and_load_run_predicts_as_the_trained_model(tiny, tmp_path):
    cfg, _ = parse_config(tiny("--save-model"))
    capture = FinalPredictions(torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)), tasks=3)
    folder, status = run(cfg, extra_plugins=[capture])
    assert status == "done"
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert [t["name"] for t in manifest["tasks"]] == json.loads((folder / "summary.json").read_text())["tasks"]
    assert {t["kind"] for t in manifest["tasks"]} == {"binary"}
    assert (manifest["image_size"], manifest["in_chans"]) == (28, 1)
    saved = load_file(str(folder / "model.safetensors"))
    assert saved.keys() == capture.state.keys()
    assert all(torch.equal(saved[k], capture.state[k]) for k in saved)
    assert manifest["head_shapes"] == {k: list(v.shape) for k, v in saved.items() if k.startswith("heads.")}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind

    net = benchmark.load_run(folder)
    assert not net.training
    with torch.no_grad():
        for t, expected in capture.outputs.items():
            assert torch.equal(net(capture.x, torch.full((5,), t)), expected)
    fresh = deployed(*rebuild(cfg, manifest), cached=False)  # as built, untrained: training moved its weights
    assert fresh.state_dict().keys() == saved.keys()
    assert any(not torch.equal(saved[k], v) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize("extra", [
    (),
    ("--strategy", "progressive"),  # the strategy wraps the network in its columns
    ("--backbone-mode", "frozen"),  # trained on cached features: saved behind its backbone again
    ("--scenario", "class-il", "--strategy", "lwf"),  # one head over every class, scored on the classes trained
    ("--strategy", "joint", "--dtype", "float64"),  # one evaluation after the whole stream; float64 weights
])
def test_hatswap_evaluate_prints_the_runs_final_row(extra, tiny, tmp_path, capsys):
    assert main(["run", *tiny("--save-model", "--cache-dir", str(tmp_path / "cache"), *extra)]) == 0
    folder = run_folder(tmp_path / "results")
    capsys.readouterr()
    assert main(["evaluate", str(folder)]) == 0
    lines = (folder / "matrix.csv").read_text().splitlines()
    assert capsys.readouterr().out.splitlines() == [lines[0], lines[-1]]


def test_a_tampered_or_missing_model_is_one_line_naming_the_fix(tiny, tmp_path, capsys):
    assert main(["run", *tiny("--save-model")]) == 0
    folder = run_folder(tmp_path / "results")
    model = folder / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    assert main(["evaluate", str(folder)]) == 2
    line = error_line(capsys)
    assert "model.safetensors" in line and "does not match model.json" in line and "--save-model" in line
    with pytest.raises(UserError, match="does not match model.json"):
        benchmark.load_run(folder)

    save_file({"w": torch.zeros(2)}, str(model))  # a file the manifest vouches for, of another network
    manifest = json.loads((folder / "model.json").read_text())
    manifest["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(manifest))
    assert main(["evaluate", str(folder)]) == 2
    assert "does not fit the network its config.json builds" in error_line(capsys)

    model.unlink()
    assert main(["evaluate", str(folder)]) == 2
    assert "holds no saved model" in error_line(capsys)
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run folder" in error_line(capsys)


def test_a_default_run_saves_no_model_and_still_matches_older_folders(tiny, tmp_path, capsys):
    cfg, _ = parse_config(tiny())
    folder, _ = run(cfg)
    assert not (folder / "model.safetensors").exists() and not (folder / "model.json").exists()
    assert main(["evaluate", str(folder)]) == 2
    line = error_line(capsys)
    assert "holds no saved model" in line and "--save-model" in line
    with pytest.raises(UserError, match="--save-model"):
        benchmark.load_run(folder)
    record = json.loads((folder / "config.json").read_text())
    assert record["config"].pop("save_model") is False
    (folder / "config.json").write_text(json.dumps(record))  # a folder written before the flag existed
    assert existing_status(folder, cfg.to_dict()) == ("same", "")
    status, detail = existing_status(folder, parse_config(tiny("--save-model"))[0].to_dict())
    assert status == "different" and "save_model" in detail


def test_split_val_scores_the_streams_validation_split(tiny):
    cfg, _ = parse_config(tiny())
    assert on_split(cfg, "val").stream_args.eval_split == "val"
    assert on_split(cfg, "test") is cfg


def test_evaluate_stream_scores_the_model_on_another_stream_with_the_same_heads(tiny, tmp_path, capsys):
    assert main(["run", *tiny("--save-model", "--epochs", "10")]) == 0
    folder = run_folder(tmp_path / "results")
    lines = (folder / "matrix.csv").read_text().splitlines()
    capsys.readouterr()
    assert main(["evaluate", str(folder), "--stream", "binary_tasks"]) == 0  # the run's own stream, named
    assert capsys.readouterr().out.splitlines() == [lines[0], lines[-1]]
    assert main(["evaluate", str(folder), "--stream", "binary_tasks", "--binary_tasks.test-per-task", "9"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    # the same training (the test subsample draws nothing the training reads), scored on 9 test images per task
    small, _ = run(parse_config(tiny("--epochs", "10", "--binary_tasks.test-per-task", "9",
                                     "--out-dir", str(tmp_path / "9")))[0])
    assert [header, row] == (small / "matrix.csv").read_text().splitlines()[::len(lines) - 1]
    assert main(["evaluate", str(folder), "--binary_tasks.test-per-task", "9"]) == 2  # knobs need --stream
    capsys.readouterr()
    assert main(["evaluate", str(folder), "--stream", "split_classes"]) == 2
    line = error_line(capsys)
    assert "--stream split_classes gives heads" in line and "evaluate it on a stream with the same tasks" in line
    assert main(["evaluate", str(folder), "--stream", "binary_tasks", "--binary_tasks.head", "sigmoid"]) == 2
    assert "--stream binary_tasks gives heads" in error_line(capsys)  # the knob reached the stream
