"""`python -m benchmark.diagnostics.gpu_check` (scripts/gpu_check.sh): every registered strategy on tiny configs on
CUDA.

Cases per strategy: the binary tasks with the backbone fine-tuned (no cache), the binary tasks with a frozen backbone
trained on cached features, and the dense suite; then DINO pretraining (`hatswap pretrain`, tiny), in fp32 and in
bf16 (`--precision bf16`). One process, one line per case (`ok` / `FAIL` with the error's last line), exit 1 on any
failure. Each case checks what CPU runs cannot: a run case, that the run finished on the device and every parameter
of the trained model is on it; a pretraining case, that the student's parameters trained on the device (as the
manifest records them). A minute or two on one GPU; `--device cpu` checks the script itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmark.runtime.library_warnings import quiet_library_warnings
from benchmark.runtime.state import Stateful

quiet_library_warnings()

from avalanche.core import SupervisedPlugin  # noqa: E402

CASES = {
    "binary, finetuned": [],
    "binary, frozen + feature cache": ["--backbone-mode", "frozen", "--feature-cache"],
    "dense suite": ["--stream", "dense_suite", "--dense_suite.train-per-task", "24", "--dense_suite.test-per-task",
                    "12", "--vit_tiny.patch-size", "8", "--batch-size", "8", "--epochs", "1"],
}


class DevicesSeen(Stateful, SupervisedPlugin):
    """Records the devices of the model's parameters and of the inputs at every forward pass (a GPU check's runs
    checkpoint as any run does: the check covers the checkpoint's tensors on the device too)."""

    state_attrs = ("seen",)

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def before_forward(self, strategy, **kwargs):
        self.seen |= {str(p.device) for p in strategy.model.parameters()} | {str(strategy.mb_x.device)}

    def before_eval_forward(self, strategy, **kwargs):
        self.before_forward(strategy)


def check(strategy: str, extra: list[str], device: str, data_root: Path, out: Path) -> str:
    from benchmark.config import parse_config
    from benchmark.harness.run import run

    argv = ["--profile", "smoke", "--strategy", strategy, "--device", device, "--data-root", str(data_root),
            "--out-dir", str(out), "--no-download", "--no-apt-install", "--cache-dir", str(out / "cache"),
            "--wandb", "off", *extra]
    probe = DevicesSeen()
    folder, _ = run(parse_config(argv)[0], force=True, extra_plugins=[probe])
    summary = json.loads((folder / "summary.json").read_text())
    if not summary["device"].startswith(device):
        raise RuntimeError(f"ran on {summary['device']}, not {device}")
    if len({d.split(":")[0] for d in probe.seen}) != 1:
        raise RuntimeError(f"model parameters / inputs on several devices: {sorted(probe.seen)}")
    return f"ACC {summary['acc']:.3f}"


PRETRAIN_CASES = {"fp32": "2 epochs + k-NN / linear probe", "bf16": "the same, --precision bf16"}


def check_pretraining(device: str, data_root: Path, out: Path, precision: str) -> str:
    """`hatswap pretrain` on the device, tiny: 2 epochs of 256 images, then the evaluation, which loads the written
    weights through the run's path. The manifest's device is where the student's parameters were during training."""
    from benchmark.pretrain import artifact
    from benchmark.pretrain.config import parse_pretrain_config
    from benchmark.pretrain.pipeline import pretrain

    cfg, _ = parse_pretrain_config([
        "--data-root", str(data_root), "--out-dir", str(out), "--no-download", "--no-apt-install",
        "--device", device, "--train-images", "256", "--epochs", "2", "--batch-size", "64", "--out-dim", "64",
        "--head-hidden", "32", "--head-bottleneck", "16", "--head-bn", "--local-crops", "2",
        "--eval-train-images", "256", "--eval-test-images", "128", "--precision", precision])
    weights, _ = pretrain(cfg, force=True)
    manifest = artifact.cached_manifest(weights)  # None if the file disagrees with its manifest
    if manifest is None:
        raise RuntimeError(f"{weights} has no manifest matching its sha256")
    if not manifest["device"].startswith(device):
        raise RuntimeError(f"pretrained on {manifest['device']}, not {device}")
    if manifest["recipe"] != cfg.recipe():  # e.g. --precision bf16 asked, another precision trained
        raise RuntimeError(f"the manifest's recipe is not the one asked for (--precision {precision})")
    dino = manifest["evaluation"]["rows"]["DINO pretrained"]
    return f"k-NN {dino['knn_top1']:.3f}, linear {dino['linear_top1']:.3f}, {manifest['train_wall_s']}s training"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (to check this script)")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="holds FashionMNIST/raw (default: data)")
    p.add_argument("--strategies", help="comma-separated subset (default: every registered strategy)")
    ns = p.parse_args(argv)
    import torch

    from benchmark.registry import STRATEGIES

    if ns.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (pass --device cpu to check the script itself)", file=sys.stderr)
        return 2
    names = ns.strategies.split(",") if ns.strategies else STRATEGIES.names()
    where = torch.cuda.get_device_name(0) if ns.device.startswith("cuda") else "cpu"
    print(f"gpu_check on {ns.device} ({where}), torch {torch.__version__}: {len(names)} strategies × {len(CASES)} "
          f"cases + DINO pretraining", flush=True)
    failures, t_all = 0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hatswap-gpu-check-") as tmp:
        cases = [(name, case, lambda n=name, e=extra: check(n, e, ns.device, ns.data_root, Path(tmp)))
                 for name in names for case, extra in CASES.items()]
        cases += [("dino-pretrain", case, lambda p=precision: check_pretraining(ns.device, ns.data_root, Path(tmp), p))
                  for precision, case in PRETRAIN_CASES.items()]
        for name, case, fn in cases:
            t0 = time.perf_counter()
            try:
                result = fn()
                line = f"ok    {name:13s} {case:32s} {time.perf_counter() - t0:5.1f}s  {result}"
            except Exception as e:  # one line per case; the traceback's last frames go to stderr
                failures += 1
                last = (str(e).strip().splitlines() or [""])[-1]
                line = f"FAIL  {name:13s} {case:32s} {time.perf_counter() - t0:5.1f}s  {type(e).__name__}: {last}"
                traceback.print_exc(limit=-3, file=sys.stderr)
            print(line, flush=True)
    print(f"gpu_check: {failures} of {len(cases)} cases failed in {time.perf_counter() - t_all:.0f}s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
