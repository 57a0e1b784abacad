"""Per-experience checkpoints (benchmark/harness/checkpoint.py, benchmark/runtime/state.py): every registered strategy
round-trips its state — a run stopped at the start of an experience and run again ends with the R, held-out losses
and training losses of an uninterrupted run, bit for bit — and declares every attribute of every plugin as state or
rebuilt; the files are checked, replaced, discarded and removed as documented. The kill -9 tests are in
tests/test_checkpoint_kill.py."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.checkpoint import checkpoint_dir, stateful_plugins
from benchmark.harness.run import run
from benchmark.registry import STRATEGIES
from benchmark.runtime.state import Stateful, pack, unpack
from tests.golden_files import continual_record


class Interrupt(Exception):
    """Stands for a killed process: raised at the start of an experience, after the last checkpoint."""


class StopAt(Stateful, SupervisedPlugin):
    """Raises Interrupt when experience `at` is about to train; keeps the strategy it stopped (for the audit)."""

    rebuilt_attrs = ("at", "stopped")

    def __init__(self, at: int | None):
        super().__init__()
        self.at, self.stopped = at, None

    def before_training_exp(self, strategy, **kwargs):
        if strategy.experience.current_experience == self.at:
            self.stopped = strategy
            raise Interrupt


def record(make, out: Path, *extra, stop_at=None, stopper=None, **run_kwargs) -> tuple[str, StopAt]:
    stopper = stopper or StopAt(stop_at)
    cfg, _ = parse_config(make("--checkpoint", "on", "--out-dir", str(out), *extra))
    folder, _ = run(cfg, extra_plugins=[stopper], **run_kwargs)
    return continual_record(folder), stopper


def undeclared(plugin) -> list[str]:
    declared = set(plugin.state_attrs) | set(plugin.rebuilt_attrs)
    return sorted(set(vars(plugin)) - declared)


def check_declared(strategy) -> None:
    for plugin in stateful_plugins(strategy):
        if isinstance(plugin, Stateful):
            assert not undeclared(plugin), f"{type(plugin).__name__} holds {undeclared(plugin)}, neither in its " \
                                           f"state_attrs nor in its rebuilt_attrs"
        assert json.dumps(pack(plugin.state_dict(), "p", {}))  # every state packs into JSON + tensors


CASES = [(name, ()) for name in STRATEGIES.names() if not STRATEGIES.get(name).meta.one_shot] + [
    ("replay", ("--scenario", "class-il")), ("lwf", ("--scenario", "class-il")), ("slca", ("--scenario", "class-il")),
    ("der", ("--scenario", "class-il")), ("ewc+replay", ()),
    ("replay", ("--scenario", "class-il", "--replay.mem-size", "2"))]  # a group given no room


@pytest.mark.parametrize(("strategy", "extra"), CASES, ids=[" ".join((s, *e)) for s, e in CASES])
def test_a_run_stopped_and_resumed_ends_bit_identical_to_an_uninterrupted_one(strategy, extra, tiny, tmp_path):
    """Also: once an experience has trained, every plugin declares each of its attributes as state or rebuilt, so
    that state a later edit adds cannot be left out of the checkpoint."""
    whole, _ = record(tiny, tmp_path / "whole", "--strategy", strategy, *extra)
    out, stoppers = tmp_path / "stopped", [StopAt(1), StopAt(2)]
    for stopper in stoppers:
        with pytest.raises(Interrupt):
            record(tiny, out, "--strategy", strategy, *extra, stopper=stopper)
    check_declared(stoppers[0].stopped)
    assert record(tiny, out, "--strategy", strategy, *extra)[0] == whole
    assert not list(out.rglob(".seed0.checkpoint"))  # removed once the run folder is written
    (summary,) = out.rglob("seed0/summary.json")
    assert json.loads(summary.read_text())["resumed_after"] == [1, 2]


def test_a_dense_suite_run_resumes_bit_identical(tiny_dense, tmp_path):
    whole, _ = record(tiny_dense, tmp_path / "whole", "--strategy", "lwf")
    with pytest.raises(Interrupt):
        record(tiny_dense, tmp_path / "stopped", "--strategy", "lwf", stop_at=2)
    assert record(tiny_dense, tmp_path / "stopped", "--strategy", "lwf")[0] == whole


def test_state_packs_to_json_and_tensors_and_back_exactly():
    g = torch.Generator().manual_seed(7)
    torch.rand(3, generator=g)
    state = {"anchors": [({"w": torch.arange(6.0).reshape(2, 3)}, {"w": torch.ones(2, dtype=torch.bfloat16)})],
             (0, 1): "tuple key", 3: {1, 2}, "groups": defaultdict(list, {(0, 4): [(1, 2)]}), "g": g,
             "floats": [math.inf, -0.0, 0.1 + 0.2], "p": torch.nn.Parameter(torch.zeros(2)), "none": None}
    tensors = {}
    skeleton = json.loads(json.dumps(pack(state, "s", tensors)))
    back = unpack(skeleton, tensors)
    assert torch.equal(back["anchors"][0][0]["w"], state["anchors"][0][0]["w"])
    assert back["anchors"][0][1]["w"].dtype == torch.bfloat16 and isinstance(back["anchors"][0], tuple)
    assert back[(0, 1)] == "tuple key" and back[3] == {1, 2}
    assert isinstance(back["groups"], defaultdict) and back["groups"][(0, 4)] == [(1, 2)]
    assert back["groups"]["new"] == []  # still a defaultdict of lists
    assert torch.equal(torch.rand(4, generator=back["g"]), torch.rand(4, generator=g))  # the same next draws
    assert back["floats"][0] == math.inf and math.copysign(1, back["floats"][1]) == -1
    assert back["floats"][2] == 0.1 + 0.2
    assert isinstance(back["p"], torch.nn.Parameter) and back["none"] is None
    with pytest.raises(TypeError, match=r"s\.m: a Linear cannot be checkpointed"):
        pack({"m": torch.nn.Linear(1, 1)}, "s", {})


def checkpoint_files(out: Path, strategy="naive") -> list[Path]:
    return sorted(checkpoint_dir(out / "runs" / "binary_tasks" / strategy / "seed0").glob("*"))


def test_one_checkpoint_is_kept_while_the_run_goes_and_none_once_it_is_written(tiny, tmp_path):
    with pytest.raises(Interrupt):
        record(tiny, tmp_path, "--strategy", "naive", stop_at=2)
    assert [p.name for p in checkpoint_files(tmp_path)] == ["exp2.json", "exp2.safetensors"]
    record(tiny, tmp_path, "--strategy", "naive")
    assert checkpoint_files(tmp_path) == []
    summary = json.loads((tmp_path / "runs" / "binary_tasks" / "naive" / "seed0" / "summary.json").read_text())
    assert summary["resumed_after"] == [2]  # the record says the run was resumed, and where
    record(tiny, tmp_path / "kept", "--strategy", "naive", "--keep-checkpoints")
    assert [p.name for p in checkpoint_files(tmp_path / "kept")] == ["exp3.json", "exp3.safetensors"]


def test_an_edited_or_foreign_checkpoint_is_not_used_and_says_why(tiny, tmp_path, capsys):
    whole, _ = record(tiny, tmp_path / "whole", "--strategy", "ewc")
    with pytest.raises(Interrupt):
        record(tiny, tmp_path, "--strategy", "ewc", stop_at=2)
    tensors = [p for p in checkpoint_files(tmp_path, "ewc") if p.suffix == ".safetensors"][0]
    data = tensors.read_bytes()
    tensors.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))  # the last tensor's bytes, flipped
    capsys.readouterr()
    assert record(tiny, tmp_path, "--strategy", "ewc")[0] == whole  # from the beginning, not from edited weights
    assert "not used (its tensors file does not match its record); starting from the beginning" in \
        capsys.readouterr().err
    with pytest.raises(Interrupt):
        record(tiny, tmp_path / "other", "--strategy", "ewc", stop_at=2)
    record(tiny, tmp_path / "other", "--strategy", "ewc", "--ewc.ewc-lambda", "3")
    assert "written by another config of this run" in capsys.readouterr().err
    with pytest.raises(Interrupt):
        record(tiny, tmp_path / "code", "--strategy", "ewc", stop_at=2)
    path = [p for p in checkpoint_files(tmp_path / "code", "ewc") if p.suffix == ".json"][0]
    saved = json.loads(path.read_text())
    saved["code"]["sources_sha256"] = "0" * 64  # as if written before an edit of the sources
    path.write_text(json.dumps(saved))
    assert record(tiny, tmp_path / "code", "--strategy", "ewc")[0] == whole
    assert "written by other code: other sources of benchmark/ or strategies/" in capsys.readouterr().err


def test_force_discards_the_checkpoint_but_a_retry_of_the_same_batch_keeps_it(tiny, tmp_path, capsys):
    """--force redoes a run; a Ray task retried within the --force batch that wrote the checkpoint resumes from it."""
    whole, _ = record(tiny, tmp_path / "whole", "--strategy", "naive")
    with pytest.raises(Interrupt):
        record(tiny, tmp_path, "--strategy", "naive", stop_at=2, force=True, batch="batch-1")
    capsys.readouterr()
    assert record(tiny, tmp_path, "--strategy", "naive", force=True, batch="batch-1")[0] == whole
    assert "resuming from" in capsys.readouterr().err
    with pytest.raises(Interrupt):
        record(tiny, tmp_path / "again", "--strategy", "naive", stop_at=2, force=True, batch="batch-1")
    assert record(tiny, tmp_path / "again", "--strategy", "naive", force=True, batch="batch-2")[0] == whole
    err = capsys.readouterr().err
    assert "--force: checkpoint" in err and "removed; starting from the beginning" in err and "resuming" not in err


def test_a_run_with_checkpoints_off_removes_an_earlier_killed_runs_checkpoint(tiny, tmp_path):
    with pytest.raises(Interrupt):
        record(tiny, tmp_path, "--strategy", "naive", stop_at=2)
    assert checkpoint_files(tmp_path)
    cfg, _ = parse_config(tiny("--strategy", "naive", "--checkpoint", "off", "--out-dir", str(tmp_path)))
    run(cfg)
    assert checkpoint_files(tmp_path) == []


class NoProtocol(SupervisedPlugin):
    pass


def test_a_plugin_without_the_state_protocol_turns_auto_off_with_a_line_and_on_into_an_error(tiny, tmp_path, capsys):
    cfg, _ = parse_config(tiny("--strategy", "naive", "--out-dir", str(tmp_path / "auto")))
    assert cfg.checkpoint == "auto" and cfg.backbone_mode == "finetune"
    run(cfg, extra_plugins=[NoProtocol()])
    assert "no checkpoints for this run: plugin NoProtocol has no state_dict / load_state_dict" in \
        capsys.readouterr().err
    cfg, _ = parse_config(tiny("--strategy", "naive", "--checkpoint", "on", "--out-dir", str(tmp_path / "on")))
    with pytest.raises(UserError, match="--checkpoint on: plugin NoProtocol has no state_dict"):
        run(cfg, extra_plugins=[NoProtocol()])


def test_auto_checkpoints_runs_whose_backbone_runs_at_every_step(tiny, tmp_path, capsys):
    from benchmark.harness.checkpoint import checkpointing

    def on(cached, *extra):
        cfg, _ = parse_config(tiny(*extra))
        return checkpointing(cfg, STRATEGIES.get(cfg.strategy).meta, cached)

    assert on(False, "--strategy", "naive")  # the smoke profile fine-tunes: the backbone runs every step
    assert not on(True, "--strategy", "naive", "--backbone-mode", "frozen")  # on cached features: seconds a run
    assert on(True, "--strategy", "naive", "--backbone-mode", "frozen", "--checkpoint", "on")
    assert not on(False, "--strategy", "joint", "--checkpoint", "on")  # one experience: nothing to resume between
    assert not on(False, "--strategy", "naive", "--checkpoint", "off")
    for strategy, writes in (("ranpac", False), ("l2p", True)):  # both frozen; prompts need the ViT every step
        cfg, _ = parse_config(tiny("--strategy", strategy, "--out-dir", str(tmp_path / strategy)))
        assert cfg.backbone_mode == "frozen" and cfg.checkpoint == "auto"
        capsys.readouterr()
        run(cfg)
        assert ("checkpoint after experience 0" in capsys.readouterr().err) == writes
