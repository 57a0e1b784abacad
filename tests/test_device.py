"""The mixed-precision path. bf16 autocast also exists on CPU, so its plumbing (float32 out of every model entry
point, LwF's hooked features) is checked here; the CUDA run itself is the gpu-marked test."""

import json
import types

import pytest
import torch
import torch.nn.functional as F

from benchmark.config import parse_config
from benchmark.harness.run import run
from benchmark.runtime.device import autocast_dtype
from strategies.lwf import LwFConfig, LwFPlugin
from tests.task_fixtures import vector_net


def test_no_autocast_on_cpu_or_when_disabled():
    assert autocast_dtype(torch.device("cpu"), amp=True) is None
    assert autocast_dtype(torch.device("cuda"), amp=False) is None


def test_bf16_autocast_model_returns_float32_and_lwf_still_distils():
    torch.manual_seed(0)
    model = vector_net(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8)), 8, (6,), 0.0, [2, 2])
    model.autocast_dtype = torch.bfloat16
    seen = []
    model.shared.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, tasks = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 1, 0])
    out = model(x, tasks)
    assert out.dtype == torch.float32 and seen == [torch.bfloat16]  # computed in bf16, handed out in fp32
    assert model.features(x).dtype == torch.float32 and model.head(0, model.features(x)).dtype == torch.float32

    plugin = LwFPlugin(LwFConfig())
    strat = types.SimpleNamespace(model=model, experience=types.SimpleNamespace(task_labels=[0]))
    plugin.before_training_exp(strat)
    plugin.after_training_exp(strat)
    plugin.before_training_exp(strat)
    with torch.no_grad():
        model.heads[0].weight.add_(1.0)
    strat.mb_x = x
    plugin.before_forward(strat)  # the template's order: the hook captures this forward's bf16 features
    strat.loss = F.cross_entropy(model(x, 1), torch.tensor([0, 1, 1, 0]))
    plugin.after_forward(strat)
    plugin.before_backward(strat)
    assert strat.loss.dtype == torch.float32 and plugin.last_kd > 0
    strat.loss.backward()
    assert model.heads[0].weight.grad is not None


@pytest.mark.gpu
def test_dino_ema_on_cuda_equals_the_per_parameter_update():
    """ema_update's multi-tensor path on CUDA (fused kernels there, a loop on the CPU) against mul_/add_ per tensor."""
    from benchmark.pretrain.objective import ema_update

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(40)]).cuda().requires_grad_(False)
    student = torch.nn.Sequential(*[torch.nn.Linear(16, 16) for _ in range(40)]).cuda()  # 80 tensors: > 1 launch
    looped = [t.clone().mul_(0.996).add_(s.detach(), alpha=1 - 0.996) for t, s in
              zip(teacher.parameters(), student.parameters(), strict=True)]
    ema_update(teacher, student, 0.996)
    assert all(torch.allclose(t, e, rtol=0, atol=1e-7) for t, e in zip(teacher.parameters(), looped, strict=True))


@pytest.mark.gpu
def test_bf16_run_on_cuda_with_cached_features(tiny, tmp_path):
    for mode in ("frozen", "finetune"):
        cfg, _ = parse_config(tiny("--strategy", "lwf", "--device", "cuda", "--backbone-mode", mode,
                                   "--out-dir", str(tmp_path / mode), "--cache-dir", str(tmp_path / "cache")))
        folder, _ = run(cfg)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["device"].startswith("cuda") and 0 <= summary["acc"] <= 1


def test_gpu_check_script_runs_its_cases_and_reports_each(fmnist_root, capsys):
    """scripts/gpu_check.sh's module, on the CPU: one `ok` line per case, DINO pretraining (fp32, bf16) last;
    without CUDA, `--device cuda` exits 2."""
    from benchmark.diagnostics import gpu_check

    assert gpu_check.main(["--device", "cpu", "--strategies", "joint", "--data-root", str(fmnist_root)]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith(("ok", "FAIL"))] == \
        [["ok", "joint"]] * len(gpu_check.CASES) + [["ok", "dino-pretrain"]] * len(gpu_check.PRETRAIN_CASES)
    if not torch.cuda.is_available():
        assert gpu_check.main([]) == 2
