"""The multi-task toolkit's API exactly as its document writes it: every Python block of docs/multi-task-api.md (the
document's blocks, verbatim) runs with only its import line changed and its undefined names defined on tiny
synthetic tensors, and does what it promises; then each keyword's defining effect and its bad values."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from benchmark.errors import UserError
from benchmark.mtl import ARCHITECTURES, MultiTaskModel
from benchmark.mtl.options import DOCUMENT_TASKS
from benchmark.mtl.train import train_stages
from tests.mtl_fixtures import N_FEATURES, tiny_cfg, tiny_data

DOC = Path(__file__).resolve().parent.parent / "docs" / "multi-task-api.md"
SNIPPETS = dict(re.findall(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)```", DOC.read_text(), re.S))
DOCUMENT_IMPORT = "from multi_task_learning import MultiTaskModel"
TASKS = ["task1", "task2", "task3"]
F = 6  # input width of the synthetic vectors: no block names it, so every model sizes itself at its first forward


def batches(n_batches: int = 4, size: int = 16, seed: int = 0):
    """[(x, {task: labels})]: task k's label is whether feature k is positive (learnable by every model)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(size, F, generator=g)
        out.append((x, {t: (x[:, k] > 0).long() for k, t in enumerate(TASKS)}))
    return out


def run_block(name: str, namespace: dict, after: dict | None = None) -> dict:
    """Execute one block statement by statement in `namespace`; after[var](namespace) runs right after the statement
    that first binds `var` (where a reader would define what the block uses next, e.g. the optimizer). → namespace,
    with `_bound[var]` = every object bound to var, in order. The later blocks continue the first one, so they
    see what its (adapted) import lines bring: MultiTaskModel, torch."""
    namespace = {"MultiTaskModel": MultiTaskModel, "torch": torch} | namespace
    code = SNIPPETS[name]
    assert code.count(DOCUMENT_IMPORT) <= 1
    code = code.replace(DOCUMENT_IMPORT, "from benchmark.mtl import MultiTaskModel")
    namespace.setdefault("_bound", {})
    pending = dict(after or {})
    for stmt in ast.parse(code).body:
        exec(compile(ast.Module([stmt], []), f"docs/multi-task-api.md:{name}", "exec"), namespace)
        for var in {t.id for node in ast.walk(stmt) for t in getattr(node, "targets", []) if isinstance(t, ast.Name)}:
            namespace["_bound"].setdefault(var, []).append(namespace[var])
            if var in pending:
                pending.pop(var)(namespace)
    assert not pending, f"block {name} never bound {sorted(pending)}"
    return namespace


def test_the_page_holds_every_block_of_the_document_and_nothing_else():
    assert list(SNIPPETS) == ["example", "shared-bottom", "mmoe", "cross-stitch", "model-config", "loss-weighting",
                              "task-relations", "alternating-training", "joint-training", "curriculum"]
    assert DOC.read_text().count("```python") == len(SNIPPETS)
    assert SNIPPETS["example"].startswith(DOCUMENT_IMPORT + "\nimport torch\n")


def test_first_example_trains_with_an_optimizer_built_before_the_first_forward(capsys):
    torch.manual_seed(0)
    data = batches()
    ns = {"num_epochs": 12, "dataloader": data, "x_new": data[0][0][:5]}
    ns = run_block("example", ns, after={"mt_model": lambda ns: ns.update(
        optimizer=torch.optim.Adam(ns["mt_model"].parameters(), lr=1e-2))})
    losses = [float(v) for v in re.findall(r"Epoch \d+: Loss = ([0-9.]+)", capsys.readouterr().out)]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0], losses
    model, optimizer = ns["mt_model"], ns["optimizer"]
    first = model.arch.trunk[0][0].weight  # the lazy layer: sized 128×F by the first batch, trained by the optimizer
    assert first.shape == (128, F) and any(p is first for p in optimizer.param_groups[0]["params"])
    assert int(optimizer.state[first]["step"]) == 12 * len(data)
    assert set(ns["predictions"]) == set(TASKS) and ns["predictions"]["task1"].shape == (5,)
    assert model.weighting_name == "static" and float(model.weighting.weights({"task3": 0})["task3"]) == 0.5


def _linear_widths(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_shared_bottom_block_takes_its_tasks_from_the_task_layers_dict():
    model = run_block("shared-bottom", {})["model"]
    assert model.task_names == ["task1", "task2"]
    out = model(torch.randn(3, F))
    assert set(out) == {"task1", "task2"} and out["task1"].shape == (3, 2)
    assert _linear_widths(model.arch.trunk) == [(F, 256), (256, 128), (128, 64)]
    assert _linear_widths(model.heads["task2"]) == [(64, 32), (32, 16), (16, 2)]


def test_mmoe_block_sizes_experts_and_gates():
    model = run_block("mmoe", {})["model"]
    assert tuple(model.task_names) == DOCUMENT_TASKS  # the call names no task: the document's tasks
    arch = model.arch
    z = torch.randn(5, F)
    model(z)
    assert len(arch.experts) == 4 and all(_linear_widths(e) == [(F, 128), (128, 64)] for e in arch.experts)
    assert all(_linear_widths(g) == [(F, 32), (32, 4)] for g in arch.gates)
    g = arch.gate_weights(z)
    assert g.shape == (3, 5, 4) and torch.allclose(g.sum(-1), torch.ones(3, 5))


def test_cross_stitch_block_mixes_after_the_listed_layers_only():
    model = run_block("cross-stitch", {})["model"]
    arch = model.arch
    x = torch.randn(4, F)
    out = model(x)
    assert len(arch.columns[0]) == 3 and arch.mixed == (0, 1) and len(arch.alphas) == 2
    # the third layer follows no unit: task1's output does not depend on task2's third layer, but on its first
    out["task1"].sum().backward()
    grad = {(t, j): float(arch.columns[t][j][0].weight.grad.abs().sum()) for t in range(3) for j in range(3)}
    assert grad[1, 2] == grad[2, 2] == 0 and grad[0, 2] > 0 and grad[1, 0] > 0 and grad[2, 1] > 0, grad
    shared = {id(p) for p in arch.shared_parameters()}
    assert id(arch.columns[1][1][0].weight) in shared and id(arch.columns[1][2][0].weight) not in shared


def test_model_config_block_builds_a_model_with_its_activation_and_dropout():
    ns = run_block("model-config", {})
    model = MultiTaskModel(tasks=TASKS, **ns["model_config"])
    model(torch.randn(2, F))
    assert _linear_widths(model.heads["task3"])[:2] == [(64, 64), (64, 32)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 3 + 2 * 3  # trunk 3, heads 2 each
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.3}


def test_loss_weighting_block_sets_initial_uncertainty_weights_and_gradnorm():
    ns = run_block("loss-weighting", {"tasks": TASKS})
    uncertainty, gradnorm = ns["_bound"]["model"]
    assert uncertainty.weighting_name == "uncertainty" and gradnorm.weighting_name == "gradnorm"
    assert ns["loss_weights"] == {"task1": 1.0, "task2": 1.0, "task3": 0.5}
    weights = MultiTaskModel(tasks=TASKS, loss_weighting="uncertainty", init_weights={"task2": 4.0}).weighting
    w = weights.weights(dict.fromkeys(TASKS, torch.tensor(1.0)))
    assert {t: float(v) for t, v in w.items()} == pytest.approx({"task1": 1.0, "task2": 4.0, "task3": 1.0})
    losses = {t: torch.tensor(2.0) for t in TASKS}  # L = Σ exp(−s_t) L_t + s_t, s_t = −log w_t
    assert float(weights.combine(losses)) == pytest.approx(2 + 8 + 2 - torch.log(torch.tensor(4.0)).item())


def test_task_relations_block_is_accepted_and_kept_in_task_order():
    ns = run_block("task-relations", {})
    model = MultiTaskModel(tasks=TASKS, task_relations=ns["task_relations"])
    assert model.task_relations == {("task1", "task2"): "positive", ("task1", "task3"): "negative",
                                    ("task2", "task3"): "neutral"}
    swapped = MultiTaskModel(tasks=TASKS, task_relations={("task3", "task1"): "negative"}).task_relations
    assert swapped == {("task1", "task3"): "negative"}


@pytest.mark.parametrize("relations,fragment", [
    ({("task1", "task9"): "positive"}, "unknown task"), ({("task1", "task2"): "friendly"}, "must be one of"),
    ({("task1", "task1"): "positive"}, "two different"), ({"task1": "positive"}, "pairs"),
    ({("task1", "task2"): "positive", ("task2", "task1"): "negative"}, "both")])
def test_bad_task_relations_are_one_clear_error(relations, fragment):
    with pytest.raises(UserError, match=fragment):
        MultiTaskModel(tasks=TASKS, task_relations=relations)


def _helpers(model: MultiTaskModel, calls: list) -> dict:
    """The training-strategy blocks' own functions, as a reader would write them over a MultiTaskModel."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def train_step(task, batch):
        x, labels = batch
        loss = model.task_losses(model(x), {task: labels[task]})[task]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        calls.append(task)
        return loss

    def compute_loss(task, batch):
        x, labels = batch
        calls.append(task)
        return model.task_losses(model(x), {task: labels[task]})[task]

    return {"train_step": train_step, "compute_loss": compute_loss, "weighted_sum": model.weighting.combine}


def test_alternating_and_joint_training_blocks_run_over_a_model():
    model, calls = MultiTaskModel(tasks=TASKS), []
    data = batches(n_batches=2)
    ns = {"tasks": TASKS, "num_epochs": 2, "task_dataloaders": dict.fromkeys(TASKS, data),
          "multi_task_dataloader": data, **_helpers(model, calls)}
    run_block("alternating-training", ns)
    assert calls == [t for _ in range(2) for t in TASKS for _ in data]
    calls.clear()
    ns = run_block("joint-training", ns)
    assert calls == [t for _ in range(2) for _ in data for t in TASKS]
    assert ns["total_loss"].dim() == 0 and model.arch.trunk[0][0].weight.grad is not None


def test_curriculum_block_is_the_curriculum_schedule():
    from benchmark.mtl.registries import SCHEDULES
    from benchmark.mtl.schedules.curriculum import CurriculumConfig

    schedule = run_block("curriculum", {})["task_schedule"]
    stages = SCHEDULES.get("curriculum").build(CurriculumConfig(starts=tuple(schedule)), epochs=30,
                                               tasks=tuple(TASKS))
    assert [list(s.tasks) for s in stages] == list(schedule.values()) and [s.epochs for s in stages] == [10] * 3


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_sizes_itself_at_the_first_forward_and_takes_the_activation(architecture):
    """Unless its registration says `lazy_input=False` (then a clear error asks for in_features)."""
    torch.manual_seed(0)
    kw = {"architecture": architecture, "shared_layers": [8, 8], "task_layers": [4], "num_experts": 2}
    sized = MultiTaskModel(TASKS, in_features=F, activation="tanh", **kw)
    assert any(isinstance(m, nn.Tanh) for m in sized.arch.modules()) and any(
        isinstance(m, nn.Tanh) for m in sized.heads.modules())
    if not ARCHITECTURES.get(architecture).meta.lazy_input:
        with pytest.raises(UserError, match="in_features"):
            MultiTaskModel(TASKS, **kw)
        return
    lazy = MultiTaskModel(TASKS, **kw)
    assert any(isinstance(p, nn.parameter.UninitializedParameter) for p in lazy.parameters())
    out = lazy.materialize(torch.randn(3, F))(torch.randn(3, F))
    assert all(type(p) is nn.Parameter and p.requires_grad for p in lazy.parameters())
    assert all(v.shape == (3, 2) for v in out.values())
    assert sum(p.numel() for p in lazy.parameters()) == sum(p.numel() for p in sized.parameters())


def test_activation_is_the_non_linearity_between_layers():
    model = MultiTaskModel(["a"], shared_layers=[5, 4], task_layers=[], in_features=3, activation="gelu")
    x = torch.randn(2, 3)
    l1, l2 = model.arch.trunk[0][0], model.arch.trunk[1][0]
    expected = nn.functional.gelu(l2(nn.functional.gelu(l1(x))))
    assert torch.allclose(model.arch(x)["a"], expected)
    with pytest.raises(UserError, match="activation one of"):
        MultiTaskModel(["a"], in_features=3, activation="swish")


@pytest.mark.parametrize("kwargs,fragment", [
    ({"architecture": "shared-bottom", "gate_layers": [8]}, "gate_layers belongs to 'mmoe'"),
    ({"architecture": "mmoe", "cross_stitch_positions": [1]}, "cross_stitch_positions belongs to 'cross-stitch'"),
    ({"architecture": "cross-stitch", "expert_layers": [8]}, "expert_layers sizes mmoe"),
    ({"architecture": "mmoe", "expert_layers": [8], "shared_layers": [16]}, "not both"),
    ({"architecture": "cross-stitch", "num_layers": 2, "cross_stitch_positions": [3]}, r"exceed the 2"),
    ({"architecture": "cross-stitch", "cross_stitch_positions": []}, "at least one"),
    ({"architecture": "cross-stitch", "cross_stitch_positions": 2}, "list of integers"),
    ({"num_layers": 3, "shared_layers": [8, 8]}, "num_layers=3"),
    ({"loss_weighting": "equal", "init_weights": {"task1": 2.0}}, "init_weights belongs to 'uncertainty'"),
    ({"loss_weighting": "uncertainty", "init_weights": {"task1": 0}}, "positive"),
    ({"task_layers": {"task1": [4], "task2": [4], "task3": [4], "task4": [4]}}, "unknown task"),
    ({"task_lrs": {"task4": 0.1}}, "unknown task"), ({"task_lrs": {"task1": -1}}, "positive"),
    ({"architecture": "mmoe", "num_expert": 2}, r"unknown MultiTaskModel keyword\(s\) \['num_expert'\]"),
    ({"architecture": "mmoe", "num_experts": 2.5}, "num_experts must be an integer"),
])
def test_documented_keywords_reject_what_does_not_apply(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        MultiTaskModel(**({"tasks": TASKS} | kwargs))


def test_tasks_come_from_the_call_or_the_document():
    assert MultiTaskModel(loss_weights={"a": 1.0, "b": 2.0}).task_names == ["a", "b"]
    assert MultiTaskModel(architecture="mmoe", num_experts=2).task_names == list(DOCUMENT_TASKS)
    assert [w for _, w in _linear_widths(MultiTaskModel(num_layers=3, in_features=2).arch.trunk)] == [64] * 3
    with pytest.raises(UserError, match="pass tasks="):
        MultiTaskModel(task_layers={"a": [4]}, loss_weights={"b": 1.0})


def test_task_lrs_put_each_head_in_its_own_group_and_train_it_at_that_rate():
    torch.manual_seed(0)
    data = tiny_data()
    model = MultiTaskModel(data.tasks, in_features=N_FEATURES, shared_layers=[8], task_layers=[4],
                           task_lrs={"bin": 1e-9})
    groups = model.param_groups(1e-2)
    assert [g["lr"] for g in groups] == [1e-2, 1e-9] and groups[1]["task"] == "bin"
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.heads["bin"].parameters()}
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter once
    before = {t: [p.detach().clone() for p in model.heads[t].parameters()] for t in model.task_names}
    train_stages(model, data, [_stage(model)], tiny_cfg(), "cpu")
    moved = {t: max(float((p - q).abs().max()) for p, q in zip(model.heads[t].parameters(), before[t], strict=True))
             for t in model.task_names}
    assert moved["bin"] < 1e-7 and moved["cls"] > 1e-3 and moved["recon"] > 1e-3, moved
    assert len(MultiTaskModel(["a"], in_features=2).param_groups(0.1)) == 1


def _stage(model):
    from benchmark.mtl.schedules.stage import Stage

    return Stage(tasks=tuple(model.task_names), epochs=1, eval_label="after_joint")


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_grad_clip_bounds_the_global_gradient_norm_at_every_step(clip):
    torch.manual_seed(0)
    data = tiny_data()
    model = MultiTaskModel(data.tasks, in_features=N_FEATURES, shared_layers=[8], task_layers=[4])
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)  # every optimizer's step, the trainer's own Adam included
    try:
        train_stages(model, data, [_stage(model)], tiny_cfg(grad_clip=clip), "cpu")
    finally:
        handle.remove()
    assert len(norms) == 4  # 32 samples, batches of 8
    if clip:
        assert max(norms) <= clip * (1 + 1e-5)
    else:
        assert min(norms) > 0.05  # unclipped, the bound above is not met anyway: the test can fail


def test_the_cli_takes_the_new_knobs_and_records_them():
    from benchmark.mtl.config import parse_mtl_config
    from benchmark.mtl.run import build_model
    from benchmark.tasks import TaskSpec

    cfg, _ = parse_mtl_config(["--architecture", "mmoe", "--mmoe.gate-layers", "8", "--activation", "tanh",
                               "--grad-clip", "1.5", "--task-lr", "a=0.01", "--weighting", "uncertainty",
                               "--uncertainty.init-weights", "b=2", "--shared-width", "8", "--experts", "2"])
    flat = cfg.to_dict()
    assert (flat["activation"], flat["grad_clip"], flat["task_lr"]) == ("tanh", 1.5, "a=0.01")
    assert flat["mmoe.gate_layers"] == [8] and flat["uncertainty.init_weights"] == "b=2"
    model = build_model(cfg, [TaskSpec("a", kind="binary"), TaskSpec("b", kind="binary")], (1, 8, 8))
    assert model.task_lrs == {"a": 0.01} and _linear_widths(model.arch.gates[0])[-1][1] == 2
    assert float(model.weighting.weights({"b": 0})["b"]) == pytest.approx(2.0)
    assert build_model(cfg, [TaskSpec("b", kind="binary")], (1, 8, 8), ["a", "b"]).task_lrs == {}  # a baseline
    with pytest.raises(UserError, match="unknown task"):
        build_model(cfg, [TaskSpec("b", kind="binary")], (1, 8, 8), ["b", "c"])
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    cs, _ = parse_mtl_config(["--architecture", "cross-stitch", "--shared-layers", "3", "--cross-stitch.positions",
                              "1,2"])
    assert cs.to_dict()["cross-stitch.positions"] == [1, 2]
    for argv, fragment in [(["--task-lr", "a"], "task=value"), (["--grad-clip", "-1"], "--grad-clip"),
                           (["--activation", "swish"], "invalid choice")]:
        with pytest.raises(UserError, match=fragment):
            parse_mtl_config(argv)
    for quick_start in (["--architecture", "shared-bottom", "--tasks", "3", "--shared-layers", "2"],
                        ["--architecture", "mmoe", "--tasks", "3", "--experts", "4"]):
        assert parse_mtl_config(quick_start)[0].tasks == "3"  # the document's two command lines


@pytest.mark.parametrize("architecture,knob", [("mmoe", "mmoe.gate_layers"),
                                               ("cross-stitch", "cross-stitch.positions")])
def test_runs_written_before_the_new_knobs_keep_their_trunk(architecture, knob):
    """A baseline folder from before `activation` and the architectures' new knobs still matches its experiments."""
    from benchmark.mtl.config import parse_mtl_config
    from benchmark.mtl.transfer import trunk_key

    new = parse_mtl_config(["--architecture", architecture])[0].to_dict()
    old = {k: v for k, v in new.items() if k not in ("activation", knob)}
    assert trunk_key(old) == trunk_key(new)
    assert trunk_key(new | {"activation": "gelu"}) != trunk_key(new)
