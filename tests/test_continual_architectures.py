"""One model contract, two implementers: the multi-task toolkit's `MultiTaskModel` is a `MultiHeadModel`, so every
continual strategy runs on every multi-task architecture (`hatswap run --architecture mmoe`) that declares what it
needs; a pairing that cannot work is refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.grid.executors import execute_run
from benchmark.harness.run import run
from benchmark.models.contract import MultiHeadModel
from benchmark.mtl.continual import register_models
from benchmark.mtl.model import MultiTaskModel
from benchmark.mtl.registries import ARCHITECTURES
from benchmark.outputs.results import existing_status, read_run
from benchmark.registry import MODELS, STRATEGIES
from benchmark.tasks import TaskSpec, task_kind
from strategies.common.importance import PenaltyPlugin

register_models()  # what the composition root (benchmark/cli.py) does before parsing a run's flags
TASKS = [TaskSpec("a", kind="multiclass", params={"num_classes": 3}), TaskSpec("b", kind="binary")]
LABELS = torch.tensor([0, 1, 1, 0, 1])


def toolkit_model(architecture: str) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(TASKS, architecture=architecture, shared_layers=[8, 6], task_layers=(), in_features=4)


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_meets_the_model_contract(architecture):
    model = toolkit_model(architecture).eval()
    x = torch.randn(5, 4)
    assert isinstance(model, MultiHeadModel) and model.head_dims == [3, 2]
    by_name = model(x)  # the toolkit's convention: {task name: output}
    routed = model(x, LABELS)  # the contract's: B × max(head_dims), each row through its own task's head
    assert routed.shape == (5, 3)
    for i, t in enumerate(LABELS.tolist()):
        assert torch.allclose(routed[i, : model.head_dims[t]], by_name[TASKS[t].name][i], atol=1e-6)
    assert torch.isinf(routed[LABELS == 1, 2]).all()  # a binary row's third column is padding (−inf for logits)
    feats = model.features(x)
    assert all(torch.allclose(model.head(t, feats), by_name[s.name], atol=1e-6) for t, s in enumerate(TASKS))
    assert torch.allclose(model.forward_single_task(x, 1), by_name["b"], atol=1e-6)
    out = model.head(0, feats)
    assert float(model.distill(0, out, out, 2.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("architecture", ["mmoe", "cross-stitch", "shared-bottom"])
def test_the_backbone_view_shares_the_layers_and_lwf_hooks_the_representations(architecture):
    model = toolkit_model(architecture).eval()
    view = model.with_backbone(model.backbone)
    assert view.heads is model.heads and view.arch is not model.arch
    assert [id(p) for p in view.parameters()] == [id(p) for p in model.parameters()]
    x = torch.randn(5, 4)
    assert torch.equal(view(x, LABELS), model(x, LABELS))
    captured = []
    hook = model.shared.register_forward_hook(lambda m, i, o: captured.append(o))
    model(x, LABELS)
    hook.remove()
    assert len(captured) == 1 and torch.equal(captured[0], model.features(x))


def test_the_toolkit_output_keeps_each_kind_shape_and_its_loss_reads_the_flattened_output():
    spec = TaskSpec("r", kind="reconstruction", params={"shape": [2, 3], "mse_of_mean_image": 1.0})
    model = MultiTaskModel([spec, TaskSpec("b")], in_features=4, shared_layers=[8], task_layers=())
    x, target = torch.randn(5, 4), torch.randn(5, 2, 3)
    out = model(x)["r"]
    assert out.shape == (5, 2, 3)
    kind = task_kind("reconstruction")
    assert torch.equal(kind.unpack_output(out.flatten(1), spec), out)
    assert torch.equal(model.task_losses(model(x), {"r": target})["r"], torch.nn.functional.mse_loss(out, target))


def _run(tiny, architecture: str, strategy: str, *extra: str, plugins=()):
    cfg = parse_config(tiny("--architecture", architecture, "--strategy", strategy, "--epochs", "1",
                            "--binary_tasks.train-per-task", "24", "--binary_tasks.test-per-task", "12", *extra))[0]
    folder, status = run(cfg, extra_plugins=plugins)
    return folder, status


STRATEGY_X_ARCHITECTURE = [(s, a) for s in STRATEGIES.names() for a in ("mmoe", "cross-stitch")] + \
                          [("naive", a) for a in ARCHITECTURES.names() if a not in ("mmoe", "cross-stitch")]


@pytest.mark.parametrize(("strategy", "architecture"), STRATEGY_X_ARCHITECTURE)
def test_every_strategy_runs_on_every_architecture_that_declares_what_it_needs(tiny, strategy, architecture):
    if STRATEGIES.get(strategy).meta.prompts_backbone and not MODELS.get(architecture).meta.hidden_layers:
        with pytest.raises(UserError, match=f"--strategy {strategy} feeds .* use --architecture hatswap_net"):
            _run(tiny, architecture, strategy, *STRATEGIES.get(strategy).meta.run_flags())
        return
    if STRATEGIES.get(strategy).meta.needs_hidden and not MODELS.get(architecture).meta.hidden_layers:
        with pytest.raises(UserError, match=f"--strategy {strategy} rebuilds .* use --architecture hatswap_net"):
            _run(tiny, architecture, strategy)
        return
    if STRATEGIES.get(strategy).meta.training_free and not MODELS.get(architecture).meta.backbone_features:
        with pytest.raises(UserError, match=f"--strategy {strategy} classifies the backbone's pooled features, "
                                            f"which --architecture {architecture} does not expose"):
            _run(tiny, architecture, strategy, *STRATEGIES.get(strategy).meta.run_flags())
        return
    if toolkit_model(architecture).arch.penalty() is not None:  # a term the strategy's loss would leave out
        with pytest.raises(UserError, match=f"--architecture {architecture} adds a regulariser"):
            _run(tiny, architecture, strategy)
        return
    folder, status = _run(tiny, architecture, strategy)
    files, problem = read_run(folder)
    assert status == "done" and problem == ""
    _, labels, scores = files.matrix
    R = scores[1:]  # after the 'init' row
    assert labels[0] == "init" and len(R) == (1 if STRATEGIES.get(strategy).meta.one_shot else 3)
    assert all(len(r) == 3 and all(0 <= v <= 1 for v in r) for r in R)
    assert files.record["config"]["architecture"] == architecture
    # the architectures of one stream never share a folder, and each is a table of its own in the report
    assert folder.parts[-3] == files.summary["stream"] == f"binary_tasks@{architecture}"


class PenaltyProbe(SupervisedPlugin):
    """After each experience: the EWC plugin's latest penalty and which parameters its Fisher covers."""

    def __init__(self):
        super().__init__()
        self.penalties, self.anchored = [], set()

    def after_training_exp(self, strategy, **kwargs):
        ewc = next(p for p in strategy.plugins if isinstance(p, PenaltyPlugin))
        self.penalties.append(ewc.last_penalty)
        if ewc.anchors:
            fisher, _ = ewc.anchors[0]
            self.anchored |= {n for n, f in fisher.items() if float(f.abs().sum()) > 0}


def test_ewc_on_mmoe_penalises_drift_of_the_experts_and_gates_after_the_first_experience(tiny):
    probe = PenaltyProbe()
    _run(tiny, "mmoe", "ewc", plugins=[probe])
    assert probe.penalties[0] is None  # nothing to hold on to while training the first experience
    assert all(p is not None and p > 0 and math.isfinite(p) for p in probe.penalties[1:])
    assert any(".gates." in n for n in probe.anchored) and any(".experts." in n for n in probe.anchored)


def test_a_multi_task_architecture_refuses_what_it_cannot_build(tiny, tiny_dense):
    with pytest.raises(UserError, match="--architecture mmoe needs --hidden"):
        _run(tiny, "mmoe", "naive", "--hidden", "")
    with pytest.raises(UserError, match="tasks of kind .*segmentation.* read feature maps"):
        run(parse_config(tiny_dense("--architecture", "mmoe"))[0])
    with pytest.raises(UserError, match="unknown model 'mmoee'"):
        parse_config(tiny("--architecture", "mmoee"))


def test_a_run_written_before_the_option_matches_its_config_and_another_architecture_does_not(tiny):
    cfg = parse_config(tiny("--epochs", "1", "--binary_tasks.train-per-task", "24"))[0]
    folder, _ = run(cfg)
    record = json.loads((folder / "config.json").read_text())
    assert record["config"]["architecture"] == "hatswap_net" and folder.parts[-3:] == ("binary_tasks", "naive", "seed0")
    del record["config"]["architecture"]  # as config.json was written before --architecture existed
    (folder / "config.json").write_text(json.dumps(record))
    assert existing_status(folder, cfg.to_dict()) == ("same", "")
    other = parse_config(tiny("--epochs", "1", "--binary_tasks.train-per-task", "24", "--architecture", "mmoe"))[0]
    status, detail = existing_status(folder, other.to_dict())
    assert status == "different" and 'architecture: "hatswap_net" → "mmoe"' in detail


def test_a_ray_worker_runs_the_composition_roots_setup_before_its_run():
    calls = []
    outcome = execute_run(lambda cfg, force: calls.append("run") or (Path("."), "done"), SimpleNamespace(threads=1),
                          setup=lambda: calls.append("setup"))
    assert outcome.status == "done" and calls == ["setup", "run"]


def test_a_frozen_backbone_gets_no_gradient_and_stays_in_eval_mode():
    torch.manual_seed(0)
    model = MultiTaskModel(TASKS, architecture="mmoe", shared_layers=[8], task_layers=(), backbone="small_cnn",
                           input_shape=(1, 28, 28))
    model.freeze_backbone()
    model.train()
    assert not model.backbone.training and model.arch.experts.training
    model(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 1, 0])).clamp(min=-1e4).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters()) and list(model.backbone.parameters())
    assert model.heads["a"][-1].weight.grad is not None


def test_last_k_trains_the_last_blocks_of_every_columns_backbone(tiny):
    """progressive gives each task a column with a backbone of its own: `--backbone-mode last-k` applies to each."""
    cfg = parse_config(tiny("--architecture", "progressive", "--backbone-mode", "last-k", "--last-k", "1"))[0]
    model, identity = MODELS.get("progressive").build(cfg, TASKS, image_size=28, in_chans=1)
    columns = [column.body for column in model.backbone]  # an nn.ModuleList: one backbone per column
    assert len(columns) == len(TASKS) and identity["mode"] == "last-1"
    for body in columns:
        assert [any(p.requires_grad for p in b.parameters()) for b in body.blocks] == \
               [False] * (len(body.blocks) - 1) + [True]
        assert all(p.requires_grad for p in body.norm.parameters())
        assert not any(p.requires_grad for p in body.patch_embed.parameters())
