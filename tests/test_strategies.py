"""Contract test over every registered strategy, plus behaviour tests of LwF and replay."""

import collections
import json
import types

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import ReplayPlugin

from benchmark.config import parse_config
from benchmark.errors import UserError
from benchmark.harness.run import run
from benchmark.outputs.results import read_matrix
from benchmark.registry import STRATEGIES
from benchmark.streams.dense_suite import KIND_ORDER
from strategies.lwf import LwFConfig, LwFPlugin, kd_loss
from tests.golden_files import FLOAT64, assert_golden, continual_record, deterministic
from tests.task_fixtures import vector_net


class DevicePlacementProbe(SupervisedPlugin):
    """Records, for every eval, whether the strategy put its model on the strategy's device before evaluating.

    On CUDA a model left on the CPU fails its first forward pass (Avalanche's JointTraining moved it only for the
    experiences it had been trained on: none before training, so the untrained model's evaluation crashed); on the
    CPU both devices are the same, so the probe watches the placement itself."""

    def __init__(self):
        super().__init__()
        self.placed, self.moved, self.model = [], False, None

    def before_eval(self, strategy, **kwargs):
        model = self.model = strategy.model
        self.moved, move = False, type(model).to

        def to(module, *args, **kw):
            target = args[0] if args else kw.get("device")
            if isinstance(target, str | torch.device) and torch.device(target) == torch.device(strategy.device):
                self.moved = True
            return move(module, *args, **kw)

        model.to = types.MethodType(to, model)

    def after_eval(self, strategy, **kwargs):
        self.placed.append(self.moved)
        del self.model.to


@pytest.mark.parametrize("stream", ["binary_tasks", "dense_suite"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_fills_R_and_writes_its_run(name, stream, tiny, tiny_dense):
    make = tiny if stream == "binary_tasks" else tiny_dense
    meta = STRATEGIES.get(name).meta
    cfg, _ = parse_config(make("--strategy", name, *meta.required_flags(), *FLOAT64))
    if stream == "dense_suite" and not meta.runs_on(KIND_ORDER):  # a classifier of class labels (simplecil)
        with pytest.raises(UserError, match=f"--strategy {name} classifies class labels"):
            run(cfg)
        return
    probe = DevicePlacementProbe()
    with deterministic():
        folder, status = run(cfg, extra_plugins=[probe])
    assert status == "done"
    assert probe.placed and all(probe.placed), probe.placed  # every eval, the untrained model's included
    assert_golden(f"{stream}-{name}.txt", continual_record(folder))  # the probe changes no number
    tasks, labels, scores = read_matrix(folder / "matrix.csv")
    one_shot, baseline = meta.one_shot, meta.baseline
    assert labels == (["init", "after_joint"] if one_shot else ["init", "after_exp0", "after_exp1", "after_exp2"])
    assert len(tasks) == 3 and all(0 <= v <= 1 for row in scores for v in row)
    summary = json.loads((folder / "summary.json").read_text())
    final = [scores[i + 1][i] for i in range(3)] if baseline else scores[-1]  # a baseline's own: the diagonal
    assert summary["acc"] == pytest.approx(sum(final) / 3, abs=1e-6)
    for key in ("bwt", "forgetting", "fwt"):
        assert (summary[key] is None) == (one_shot or baseline)
    assert len(summary["exp_wall_s"]) == (1 if one_shot else 3) and summary["baseline"] == baseline
    budget = summary["budget"]
    assert budget["params"] > 0 and budget["latency_ms_per_image"] > 0 and set(budget["latency_ms_per_task"]) == \
        set(tasks)
    if stream == "dense_suite":
        assert [t.split("_")[1] for t in tasks] == ["seg", "det", "cls"]
        assert set(summary["extra_scores"]["init"][tasks[2]]) >= {"top5"}


def test_kd_loss_on_known_logits():
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # T = 2: q = softmax([0, .5]), log p = log_softmax([.5, 0]); KL = .5 (q1 - q0) = .5 tanh(.25); × T² = 4
    assert float(kd_loss(student, teacher, 2.0)) == pytest.approx(2 * torch.tanh(torch.tensor(0.25)).item())
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    q, log_p = F.softmax(t / 3, 1), F.log_softmax(s / 3, 1)
    by_hand = (q * (q.log() - log_p)).sum(1).mean() * 9
    assert float(kd_loss(s, t, 3.0)) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(kd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-7)


def _model():
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8))
    return vector_net(backbone, 8, (6,), 0.0, [2, 2, 2])


def test_lwf_plugin_adds_lambda_times_the_sum_of_kd_over_old_heads():
    model = _model()
    plugin = LwFPlugin(LwFConfig(alpha=0.7, temperature=2.0))
    strat = types.SimpleNamespace(model=model, experience=types.SimpleNamespace(task_labels=[0]))
    plugin.before_training_exp(strat)
    plugin.after_training_exp(strat)  # end of experience 0: teacher = frozen copy, old tasks = [0]
    strat.experience = types.SimpleNamespace(task_labels=[1])
    plugin.before_training_exp(strat)
    plugin.after_training_exp(strat)  # end of experience 1
    assert plugin.old_tasks == [0, 1] and not any(p.requires_grad for p in plugin.teacher.parameters())
    teacher = plugin.teacher
    with torch.no_grad():  # the student moves away from the teacher
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    plugin.before_training_exp(strat)
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 1, 0])
    plugin.before_forward(strat)  # the template's order: the features of this forward are the student's
    out = model(x, torch.full((4,), 2))
    plugin.after_forward(strat)
    model(torch.randn(4, 1, 4, 4), torch.full((4,), 2))  # a later forward (another plugin's) is not captured
    ce = F.cross_entropy(out, y)
    strat.mb_x, strat.loss = x, ce
    plugin.before_backward(strat)
    feats, t_feats = model.features(x), teacher.features(x)
    kd = [kd_loss(model.head(h, feats), teacher.head(h, t_feats), 2.0) for h in (0, 1)]
    expected = ce + 0.7 * (kd[0] + kd[1])  # λ per old head (Li & Hoiem; Avalanche), not λ/k
    assert float(strat.loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(strat.loss) > float(ce)
    strat.loss.backward()  # the KD term reaches the student's old heads
    assert model.heads[0].weight.grad.abs().sum() > 0


class LossLog(SupervisedPlugin):
    """The training loss of every iteration, after every plugin has added its terms (recorded before backward)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def before_update(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


def test_lwf_equals_avalanches_lwf_plugin_with_alpha_lambda_t_squared(tiny, tmp_path):
    """Avalanche's LwFPlugin (which calls model(x, None) for every head) sums a batchmean KL per old head without
    the T² factor: with α = λ·T² it must give our LwF's loss at every step and the same R."""
    from avalanche.training.plugins import LwFPlugin as AvalancheLwF

    lam, T = 0.7, 2.0
    ours, theirs = LossLog(), LossLog()
    cfg, _ = parse_config(tiny("--strategy", "lwf", "--lwf.alpha", str(lam), "--dropout", "0",
                               "--out-dir", str(tmp_path / "ours")))
    R_ours = read_matrix(run(cfg, extra_plugins=[ours])[0] / "matrix.csv")[2]
    cfg, _ = parse_config(tiny("--strategy", "naive", "--dropout", "0", "--out-dir", str(tmp_path / "theirs")))
    R_theirs = read_matrix(run(cfg, extra_plugins=[AvalancheLwF(alpha=lam * T**2, temperature=T), theirs])[0] /
                           "matrix.csv")[2]
    assert len(ours.losses) == len(theirs.losses) > 0
    assert ours.losses == pytest.approx(theirs.losses, rel=1e-4, abs=1e-6)
    assert sum(R_ours, []) == pytest.approx(sum(R_theirs, []), abs=1e-6)


def test_model_forward_without_task_labels_returns_every_head():
    model = _model()
    x = torch.randn(5, 1, 4, 4)
    out = model(x, None)
    assert set(out) == {0, 1, 2}
    for t in range(3):
        assert torch.allclose(out[t], model(x, torch.full((5,), t))[:, :2])


def test_lwf_with_zero_lambda_is_naive_and_with_lambda_differs(tiny, tmp_path):
    def matrix(*args):
        cfg, _ = parse_config(tiny(*args))
        return read_matrix(run(cfg)[0] / "matrix.csv")[2]

    naive = matrix("--strategy", "naive")
    assert matrix("--strategy", "lwf", "--lwf.alpha", "0", "--out-dir", str(tmp_path / "a")) == naive
    assert matrix("--strategy", "lwf", "--lwf.alpha", "5", "--out-dir", str(tmp_path / "b")) != naive


class BatchProbe(SupervisedPlugin):
    """Records the task labels seen in training batches and the replay buffer's content per experience."""

    def __init__(self):
        super().__init__()
        self.batch_tasks, self.buffer = collections.defaultdict(set), {}

    def before_training_exp(self, strategy, **kwargs):
        replay = next(p for p in strategy.plugins if isinstance(p, ReplayPlugin))
        buf = replay.storage_policy.buffer
        tasks = buf.targets_task_labels if len(buf) else []  # the empty buffer is a bare dataset
        self.buffer[strategy.experience.current_experience] = collections.Counter(tasks)
        self.buffer_xy_ok = all(int(buf[i][2]) in self.buffer[strategy.experience.current_experience]
                                for i in range(len(buf)))

    def after_training_iteration(self, strategy, **kwargs):
        self.batch_tasks[strategy.experience.current_experience] |= set(strategy.mb_task_id.tolist())


def test_replay_buffer_is_balanced_over_old_tasks_and_mixed_into_batches(tiny):
    probe = BatchProbe()
    cfg, _ = parse_config(tiny("--strategy", "replay", "--replay.mem-size", "30"))
    run(cfg, extra_plugins=[probe])
    assert probe.buffer[0] == {}
    assert probe.buffer[1] == {0: 30}
    assert probe.buffer[2] == {0: 15, 1: 15}  # the configured proportion: mem_size split evenly over past tasks
    assert probe.buffer_xy_ok
    assert probe.batch_tasks[0] == {0} and probe.batch_tasks[1] == {0, 1} and probe.batch_tasks[2] == {0, 1, 2}


class DenseBufferProbe(SupervisedPlugin):
    """The replay buffer's samples before each experience, decoded with their task's kind."""

    def __init__(self):
        super().__init__()
        self.samples, self.mixed_batch = {}, False

    def before_training_exp(self, strategy, **kwargs):
        buf = next(p for p in strategy.plugins if isinstance(p, ReplayPlugin)).storage_policy.buffer
        self.samples[strategy.experience.current_experience] = [buf[i] for i in range(len(buf))]

    def after_training_iteration(self, strategy, **kwargs):
        ids = strategy.mb_y[:, 0].long()
        assert torch.equal(ids, strategy.mb_task_id)  # packed task id travels with its sample
        self.mixed_batch |= len(set(ids.tolist())) > 1


def test_dense_replay_buffer_keeps_images_with_their_own_kind_of_target(tiny_dense):
    from benchmark.tasks import TaskSpec, task_kind

    probe = DenseBufferProbe()
    cfg, _ = parse_config(tiny_dense("--strategy", "replay", "--replay.mem-size", "12"))
    run(cfg, extra_plugins=[probe])
    assert collections.Counter(int(t) for _, _, t in probe.samples[2]) == {0: 6, 1: 6}
    assert probe.mixed_batch
    seg_spec = TaskSpec("seg", "segmentation", {"num_classes": 11, "image_size": 64})
    for x, y, t in probe.samples[2]:
        assert x.shape == (3, 64, 64) and int(y[0]) == t
        if t == 0:  # a segmentation mask: classes 0..10 and void
            mask = task_kind("segmentation").unpack_target(y[1:], seg_spec)["mask"]
            assert set(mask.unique().tolist()) <= set(range(11)) | {255} and (mask > 0).any()
        else:  # detection: at least one box, label in 0..9, inside the image
            n = int(y[1])
            rows = y[2: 2 + 6 * n].view(n, 6)  # label, x1, y1, x2, y2, crowd
            assert n >= 1 and ((rows[:, 0] >= 0) & (rows[:, 0] < 10)).all() and (rows[:, 1:5] <= 64).all()
            assert (rows[:, 5] == 0).all()


@pytest.mark.parametrize("stream,optimizer", [("binary_tasks", "adam"), ("dense_suite", "adamw")])
def test_progressive_strategy_forgets_nothing(stream, optimizer, tiny, tiny_dense):
    cfg, _ = parse_config((tiny if stream == "binary_tasks" else tiny_dense)("--strategy", "progressive",
                                                                              "--optimizer", optimizer))
    folder, _ = run(cfg)
    _, labels, R = read_matrix(folder / "matrix.csv")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["forgetting"] == 0.0 and summary["bwt"] == 0.0
    for j in range(3):  # a task's score never changes once its column is trained
        assert len({R[i][j] for i in range(j + 1, 4)}) == 1


class TaskCountProbe(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.counts = []

    def after_training_iteration(self, strategy, **kwargs):
        self.counts.append(collections.Counter(strategy.mb_task_id.tolist()))


@pytest.mark.parametrize("stream,batch", [("binary_tasks", 16), ("dense_suite", 8), ("dense_suite", 4)])
def test_joint_is_budget_matched_to_the_sequential_runs(stream, batch, tiny, tiny_dense):
    """B not divisible by T = 3: per epoch every task contributes exactly its own N_t samples (what a sequential
    run trains it on), each batch holds ⌊B/T⌋ or ⌈B/T⌉ of every task, and the extra samples rotate over tasks."""
    probe = TaskCountProbe()
    make = tiny if stream == "binary_tasks" else tiny_dense
    cfg, _ = parse_config(make("--strategy", "joint", "--batch-size", str(batch), "--epochs", "2"))
    run(cfg, extra_plugins=[probe])
    n_per_task = 90 if stream == "binary_tasks" else 24  # the fixtures' train_per_task
    total = collections.Counter()
    for c in probe.counts:
        total.update(c)
    assert total == {t: 2 * n_per_task for t in range(3)}  # 2 epochs, no task oversampled
    assert len(probe.counts) == 2 * -(-3 * n_per_task // batch)  # the steps of the merged data, none added
    steps = len(probe.counts) // 2
    for epoch in (probe.counts[:steps], probe.counts[steps:]):
        full = [c for c in epoch if sum(c.values()) == batch]
        assert all(max(c.values()) - min(c[t] for t in range(3)) <= 1 for c in full)
        extra = collections.Counter(t for c in full for t in range(3) if c[t] > batch // 3)
        assert len(extra) == 3 and max(extra.values()) - min(extra.values()) <= 1  # the remainder goes round-robin


def test_interleaved_task_batches_with_unequal_tasks():
    from strategies.joint import InterleavedTaskBatches

    torch.manual_seed(0)
    sampler = InterleavedTaskBatches([0] * 5 + [1] * 2 + [2] * 3, batch_size=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    assert sorted(i for b in batches for i in b) == list(range(10))  # every sample exactly once per epoch
    first = collections.Counter(0 if i < 5 else 1 if i < 7 else 2 for i in batches[0])
    assert first == {0: 2, 1: 1, 2: 1}


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_progressive_keeps_each_parameter_groups_settings(kind):
    from benchmark.models.backbone_training import build_optimizer
    from strategies.progressive import ProgressiveVectors, regroup

    base = vector_net(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8)), 8, (6,), 0.0, [2, 3])
    opt = build_optimizer(base, lr=1e-3, backbone_lr=1e-5, weight_decay=0.01, kind=kind)
    net = ProgressiveVectors(base)
    new = regroup(opt, base, net)
    assert type(new) is type(opt) and len(new.param_groups) == 2
    backbone_ids = {id(p) for p in net.column_backbones.parameters()}
    for g in new.param_groups:
        in_backbone = {id(p) in backbone_ids for p in g["params"]}
        assert len(in_backbone) == 1  # a group is all backbone copies or none
        assert g["lr"] == (1e-5 if in_backbone.pop() else 1e-3) and g["weight_decay"] == 0.01
    assert sum(len(g["params"]) for g in new.param_groups) == len(list(net.parameters()))
    assert len(backbone_ids) == 2 * len(list(base.backbone.parameters()))  # one copy per task's column


def test_the_zoo_profile_holds_every_strategy_and_a_combination():
    from benchmark.config import load_profile
    from benchmark.grid.batch import plan

    profile = load_profile("zoo")
    mode = profile["config"]["backbone_mode"]  # the training-free strategies need a frozen backbone
    runnable = {n for n in STRATEGIES.names() if mode in STRATEGIES.get(n).meta.backbone_modes}
    assert runnable <= set(profile["strategies"]) and "lwf+replay" in profile["strategies"]
    assert {"naive", "lwf", "gdumb"} <= runnable
    assert len(plan(profile)) == len(profile["strategies"]) * 3
