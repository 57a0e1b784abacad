"""Performance benchmark: `python -m benchmark.diagnostics.perf` prints one table (a few minutes on 2 CPU cores).

(a) harness overhead: seconds per training step of our naive strategy (Avalanche SupervisedTemplate + the harness's
    plugins) ÷ a bare PyTorch loop (zero_grad, forward, cross-entropy, backward, Adam step) on the same model, the
    same tensors and the same batch size. Target ≤ 1.10.
(b) feature cache: wall time of a full run (data, model, training, evaluation) with a frozen dino_vits16, cache
    cold ÷ cache warm. Target ≥ 10. The weights are a random init saved to a file: speed does not depend on them.
    The warm run reuses the backbone's latency measured by the cold one
    (benchmark.harness.feature_cache.cached_run_latency).
(c) feature extraction throughput in images/s per backbone on CUDA when present (batch 256, bf16 autocast), else on
    the CPU (batch 8); random init, resize to the backbone's own input size included.

(e) training samples/s on cached features (frozen vit_tiny, naive), Avalanche's per-sample fetching vs batches
    gathered by index (benchmark/harness/fast_batches.py; bit-identical).
(d) with `--grid PROFILE` (instead of a–c): the profile's whole batch run locally (one run at a time, `--threads
    1`) and on Ray (`--executor ray --cpus-per-run C`, each run 1 thread per CPU), side by side in one script, each
    into a fresh results folder; prints both wall times, their ratio (target ≤ 0.65 on 2 CPU cores) and whether
    every matrix.csv is identical. `--grid-args` passes more batch flags (e.g. `--seeds 0,1`); `--grid-modes
    local,processes --processes 4` compares N batch processes on one grid instead (a machine without Ray).

Data: real Fashion-MNIST if `--data-root` holds it, else small generated files in the same IDX format.
Not a test: timings depend on the machine; the README quotes one run.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import struct
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", module=r"(avalanche|qpsolvers)(\..*)?")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")


def write_idx_fashion_mnist(root: Path, per_class_train: int = 300, per_class_test: int = 60) -> Path:
    """root/FashionMNIST/raw/<IDX files>: class c lights up a band at a class-dependent row, plus noise."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, per in (("train", per_class_train), ("t10k", per_class_test)):
        labels = rng.permutation(np.repeat(np.arange(10), per))
        imgs = rng.integers(0, 60, size=(len(labels), 28, 28))
        for i, c in enumerate(labels):
            imgs[i, 2 + int(c) * 24 // 10: 5 + int(c) * 24 // 10] = 230
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 0x0803, len(labels), 28, 28)
                                                         + imgs.astype(np.uint8).tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 0x0801, len(labels))
                                                         + labels.astype(np.uint8).tobytes())
    return root


def has_fashion_mnist(root: Path) -> bool:
    raw = root / "FashionMNIST" / "raw"
    return all((raw / f).is_file() for f in FMNIST_FILES)


def _cfg(args: list[str]):
    from benchmark.config import parse_config

    return parse_config(args)[0]


def step_overhead(data_root: Path, epochs: int, repeats: int) -> dict:
    """(a): the default profile's model and batch size on one experience."""
    from benchmark.harness.harness_plugins import FiniteLossGuard, PrimaryScoreCollector, TrainLog
    from benchmark.models import build_model
    from benchmark.models.backbone_training import build_optimizer
    from benchmark.registry import STRATEGIES, STREAMS

    cfg = _cfg(["--profile", "default", "--data-root", str(data_root), "--no-download", "--no-apt-install",
                "--device", "cpu", "--epochs", str(epochs), "--binary_tasks.train-per-task", "960"])
    bench = STREAMS.get(cfg.stream).build(cfg.stream_args, seed=0, data_root=cfg.data_root, download=False,
                                          apt_install=False)
    exp = bench.scenario.train_stream[0]
    xs, ys, _ = (torch.cat(t) for t in zip(*DataLoader(exp.dataset, batch_size=1024), strict=True))
    torch.manual_seed(0)
    model0, _ = build_model(cfg, bench.tasks, image_size=28, in_chans=1)
    steps = epochs * -(-len(xs) // cfg.batch_size)

    def bare() -> float:
        model = copy.deepcopy(model0).train()
        opt = build_optimizer(model, cfg.lr, cfg.backbone_lr, cfg.weight_decay)
        loader = DataLoader(TensorDataset(xs, ys), batch_size=cfg.batch_size, shuffle=True)
        crit = torch.nn.CrossEntropyLoss()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                loss = crit(model(x, 0), y)
                loss.backward()
                opt.step()
        return (time.perf_counter() - t0) / steps

    def harness() -> float:
        model = copy.deepcopy(model0)
        strategy = STRATEGIES.get("naive").build(
            None, plugins=[PrimaryScoreCollector(bench.tasks), TrainLog(), FiniteLossGuard()], model=model,
            optimizer=build_optimizer(model, cfg.lr, cfg.backbone_lr, cfg.weight_decay),
            criterion=torch.nn.CrossEntropyLoss(), train_mb_size=cfg.batch_size, train_epochs=epochs,
            eval_mb_size=cfg.eval_batch_size, device=torch.device("cpu"), eval_every=-1,
            evaluator=__import__("avalanche.training.plugins", fromlist=["EvaluationPlugin"]).EvaluationPlugin(
                loggers=[]))
        t0 = time.perf_counter()
        strategy.train(exp)
        return (time.perf_counter() - t0) / steps

    bare(), harness()  # warm-up: allocator, thread pools, first-call imports
    b, h = [], []
    for _ in range(repeats):  # interleaved, best of each: the machine is shared, noise only ever adds time
        b.append(bare())
        h.append(harness())
    return {"bare_ms": 1e3 * min(b), "harness_ms": 1e3 * min(h), "ratio": min(h) / min(b), "steps": steps}


def cache_cold_warm(data_root: Path, work: Path) -> dict:
    """(b): two identical runs over a fresh cache directory."""
    import contextlib
    import io
    import json

    from benchmark.harness.run import run

    torch.manual_seed(0)
    weights = work / "dino_vits16_random.safetensors"
    vit = timm.create_model("vit_small_patch16_224.dino", pretrained=False, num_classes=0)
    __import__("safetensors.torch", fromlist=["save_file"]).save_file(vit.state_dict(), str(weights))
    walls = {}
    for which in ("cold", "warm"):
        cfg = _cfg(["--data-root", str(data_root), "--no-download", "--no-apt-install", "--device", "cpu",
                    "--backbone", "dino_vits16", "--backbone-weights", str(weights), "--backbone-mode", "frozen",
                    "--cache-dir", str(work / "cache"), "--out-dir", str(work / which), "--epochs", "3",
                    "--binary_tasks.train-per-task", "120", "--binary_tasks.test-per-task", "45",
                    "--strategy", "naive"])
        with contextlib.redirect_stderr(io.StringIO()):
            folder, _ = run(cfg)
        walls[which] = json.loads((folder / "summary.json").read_text())["total_wall_s"]
    return walls | {"ratio": walls["cold"] / walls["warm"], "images": 3 * (120 + 45)}


def cached_training(data_root: Path, work: Path, epochs: int = 15) -> dict:
    """(e): training samples/s of a naive run on cached features (frozen vit_tiny, every training image), fetching
    through Avalanche's dataset layers (HATSWAP_SLOW_BATCHES=1) vs gathered by index
    (benchmark/harness/fast_batches.py), interleaved after one run that fills the cache; the best of three each."""
    import contextlib
    import io
    import json

    from benchmark.harness.run import run

    rates: dict[str, list[float]] = {"slow": [], "fast": []}
    for k, which in enumerate(["fill", "slow", "fast", "slow", "fast", "slow", "fast"]):
        os.environ["HATSWAP_SLOW_BATCHES"] = "1" if which == "slow" else "0"
        cfg = _cfg(["--data-root", str(data_root), "--no-download", "--no-apt-install", "--device", "cpu",
                    "--backbone-mode", "frozen", "--cache-dir", str(work / "cache-e"), "--out-dir",
                    str(work / f"e{k}"), "--epochs", str(epochs), "--binary_tasks.train-per-task", "0",
                    "--strategy", "naive"])
        with contextlib.redirect_stderr(io.StringIO()):
            folder, _ = run(cfg)
        summary = json.loads((folder / "summary.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        n = config["backbone"]["feature_cache"]["train"]["shape"][0]
        if which != "fill":
            rates[which].append(n * epochs / summary["train_wall_s"])
    os.environ.pop("HATSWAP_SLOW_BATCHES", None)
    slow, fast = max(rates["slow"]), max(rates["fast"])
    return {"slow": slow, "fast": fast, "ratio": fast / slow}


def throughput(budget_s: float) -> list[tuple[str, str, float]]:
    """(c): images/s through BackboneInput (28 px grey → the backbone's size) and the ViT, no grad, eval mode."""
    from benchmark.models.dino import PretrainedViT
    from benchmark.registry import BACKBONES

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    rows = []
    for name in ("vit_tiny", "dino_vits16", "dino_vitb16", "dinov2_vits14"):
        entry = BACKBONES.get(name)
        if name == "vit_tiny":
            net = entry.build(entry.config_cls(), image_size=28, in_chans=1).module
            size = "28 px"
        else:
            vit = timm.create_model(entry.meta.timm_name, pretrained=False, num_classes=0)
            net = PretrainedViT(vit, timm.data.resolve_model_data_config(vit))
            size = f"{net.input.size[0]} px"
        net.eval().to(device)
        # CPU: small batches (DINOv2 at 518 px takes ~2 s per image); CUDA: extraction's own batch, bf16 autocast
        x = torch.randn(256 if cuda else 8, 1, 28, 28, device=device).clamp(-1, 1)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            net(x[:4])  # warm-up
            n, t0 = 0, time.perf_counter()
            while n == 0 or time.perf_counter() - t0 < budget_s:
                net(x)
                n += len(x)
                if cuda:
                    torch.cuda.synchronize()
            rows.append((name, f"{size}, {'cuda bf16' if cuda else 'cpu'}", n / (time.perf_counter() - t0)))
    return rows


def grid_comparison(profile: str, cpus_per_run: float, extra: list[str], work: Path,
                      modes: tuple[str, ...] = ("local", "ray"), processes: int = 2) -> list[str]:
    """(d): wall time of the same batch run several ways, each in subprocesses of its own (as a user runs them):
    `local` one run at a time with 1 thread; `ray` as Ray tasks; `processes`: N `hatswap batch` processes on the
    same grid and results folder (how a machine without Ray runs a grid concurrently: each process claims the runs
    no other holds, and one extracts a shared cache entry while the others wait for it). Every mode's matrices are
    compared with the first mode's."""
    import subprocess

    flags = {"local": ["--threads", "1"], "ray": ["--executor", "ray", "--cpus-per-run", f"{cpus_per_run:g}"],
             "processes": ["--threads", "1"]}
    walls, folders = {}, {}
    for name in modes:
        folders[name] = work / f"grid-{name}"
        cmd = [sys.executable, "-m", "benchmark", "batch", "--profile", profile, "--out-dir", str(folders[name]),
               *flags[name], *extra]
        copies = processes if name == "processes" else 1
        print(f"(d) {copies} × {' '.join(cmd[1:])}", file=sys.stderr)
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(copies)]
        outs = [(p, p.communicate()[1]) for p in procs]
        walls[name] = time.perf_counter() - t0
        for p, err in outs:
            if p.returncode != 0:
                raise SystemExit(f"(d) the {name} batch failed (exit {p.returncode}):\n{err[-2000:]}")
    mats = {n: {p.relative_to(f): p.read_bytes() for p in (f / "runs").rglob("matrix.csv")}
            for n, f in folders.items()}
    first = modes[0]
    label = {"local": "local, one run at a time, 1 thread", "ray": f"Ray, {cpus_per_run:g} CPU per run",
             "processes": f"{processes} batch processes on one grid, 1 thread each"}
    rows = [f"| (d) `{profile}` batch, {label[first]} ({len(mats[first])} runs, {os.cpu_count()} cores) | "
            f"{walls[first]:.1f} s | |"]
    for name in modes[1:]:
        ratio = walls[name] / walls[first]
        target = f"≤ 0.65 {'✓' if ratio <= 0.65 else '✗'}" if (first, name) == ("local", "ray") else ""
        rows += [f"| (d) the same, {label[name]} | {walls[name]:.1f} s | |",
                 f"| (d) {name} ÷ {first} | **{ratio:.2f}** | {target} |",
                 f"| (d) every matrix.csv identical to {first}'s | "
                 f"{'yes' if mats[name] == mats[first] and mats[first] else 'NO'} | yes |"]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.perf", description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, help="holds FashionMNIST/raw; default: generated IDX files")
    p.add_argument("--epochs", type=int, default=2, help="(a) epochs per timing")
    p.add_argument("--repeats", type=int, default=3, help="(a) interleaved repetitions; the best of each counts")
    p.add_argument("--budget-s", type=float, default=8.0, help="(c) seconds per backbone")
    p.add_argument("--grid", metavar="PROFILE", help="(d) only: this profile's batch, local vs Ray")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="(d) Ray CPUs per run")
    p.add_argument("--grid-args", default="", help="(d) more batch flags, e.g. '--seeds 0,1'")
    p.add_argument("--grid-modes", default="local,ray", help="(d) comma-separated, first is the baseline: local, "
                   "ray, processes (N batch processes on one grid: a machine without Ray)")
    p.add_argument("--processes", type=int, default=2, help="(d) how many batch processes for `processes`")
    ns = p.parse_args(argv)
    if ns.grid:
        with tempfile.TemporaryDirectory(prefix="hatswap-perf-") as tmp:
            print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, CUDA "
                  f"{'yes' if torch.cuda.is_available() else 'no'}; torch {torch.__version__}", file=sys.stderr)
            modes = tuple(m.strip() for m in ns.grid_modes.split(",") if m.strip())
            if not modes or set(modes) - {"local", "ray", "processes"}:
                p.error(f"--grid-modes takes local, ray, processes; got {ns.grid_modes!r}")
            rows = grid_comparison(ns.grid, ns.cpus_per_run, ns.grid_args.split(), Path(tmp), modes, ns.processes)
        print("\n".join(["| measurement | value | target |", "|---|---|---|", *rows]))
        return 0
    with tempfile.TemporaryDirectory(prefix="hatswap-perf-") as tmp:
        work = Path(tmp)
        real = ns.data_root is not None and has_fashion_mnist(ns.data_root)
        data_root = ns.data_root if real else write_idx_fashion_mnist(work / "data")
        os.environ.setdefault("HATSWAP_FASHION_MNIST_DEBIAN_DIR", "/nonexistent/hatswap-perf")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
              f"{torch.get_num_threads()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}; torch "
              f"{torch.__version__}; data: {'real Fashion-MNIST' if real else 'generated IDX files'}",
              file=sys.stderr)
        a = step_overhead(data_root, ns.epochs, ns.repeats)
        b = cache_cold_warm(data_root, work)
        c = throughput(ns.budget_s)
        e = cached_training(data_root, work)
    lines = [
        "| measurement | value | target |",
        "|---|---|---|",
        f"| (a) bare PyTorch loop, per step (vit_tiny default, batch 64) | {a['bare_ms']:.2f} ms | |",
        f"| (a) harness (naive strategy + plugins), per step | {a['harness_ms']:.2f} ms | |",
        f"| (a) harness ÷ bare | **{a['ratio']:.3f}** | ≤ 1.10 {'✓' if a['ratio'] <= 1.10 else '✗'} |",
        f"| (b) full run, frozen dino_vits16, cache cold ({b['images']} images) | {b['cold']:.2f} s | |",
        f"| (b) the same run, cache warm | {b['warm']:.2f} s | |",
        f"| (b) cold ÷ warm | **{b['ratio']:.1f}×** | ≥ 10× {'✓' if b['ratio'] >= 10 else '✗'} |",
        *[f"| (c) extraction, {name} (random init, {size}) | {ips:.1f} images/s | |" for name, size, ips in c],
        f"| (e) cached training, Avalanche's per-sample fetching | {e['slow']:.0f} samples/s | |",
        f"| (e) cached training, batches gathered by index | {e['fast']:.0f} samples/s | |",
        f"| (e) gathered ÷ per-sample | **{e['ratio']:.2f}×** | |",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
