"""What per-experience checkpoints cost and save (issue 34's targets), measured side by side in one process:

  1. a default-profile run with --checkpoint off, then the same run with --checkpoint on: the wall-time ratio
     (target ≤ 1.05) and the checkpoint's size on disk (its largest: after the last experience);
  2. the same run stopped at the start of its last experience (as a kill would leave it), then resumed: the resumed
     process's wall time / the whole run's (target < 0.5), and its R equal to the uninterrupted run's.

    .venv/bin/python scripts/checkpoint_cost.py                       # lwf: its state holds a teacher, the largest
    .venv/bin/python scripts/checkpoint_cost.py --strategy replay --repeats 2

Timings on a shared machine are noisy: the two runs of each pair run back to back, in alternating order over the
repeats, and the script prints each pair's ratio. Uses the default profile's data (real Fashion-MNIST, downloaded or
from Debian's package as `hatswap run` does)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avalanche.core import SupervisedPlugin  # noqa: E402

from benchmark.config import parse_config  # noqa: E402
from benchmark.harness.checkpoint import checkpoint_dir  # noqa: E402
from benchmark.harness.run import run  # noqa: E402
from benchmark.runtime.state import Stateful  # noqa: E402


class Stop(Exception):
    pass


class StopAtLast(Stateful, SupervisedPlugin):
    rebuilt_attrs = ("at",)

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def before_training_exp(self, strategy, **kwargs):
        if strategy.experience.current_experience == self.at:
            raise Stop


def timed(args: list[str], out: Path, plugins=()) -> tuple[float, Path | None]:
    cfg, _ = parse_config([*args, "--out-dir", str(out)])
    t0 = time.perf_counter()
    try:
        folder, _ = run(cfg, extra_plugins=list(plugins))
    except Stop:
        folder = None
    return time.perf_counter() - t0, folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", default="lwf")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--data-root", default="data")
    ns, extra = p.parse_known_args()
    base = ["--profile", "default", "--strategy", ns.strategy, "--data-root", ns.data_root, "--threads", "2",
            "--keep-checkpoints", *extra]
    work = Path(tempfile.mkdtemp(prefix="hatswap-ckpt-"))
    try:
        for r in range(ns.repeats):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            seconds = {m: timed([*base, "--checkpoint", m], work / f"{m}{r}")[0] for m in order}
            on_folder = work / f"on{r}" / "runs" / "binary_tasks" / ns.strategy / "seed0"
            size = sum(f.stat().st_size for f in checkpoint_dir(on_folder).glob("*"))
            print(f"repeat {r}: --checkpoint off {seconds['off']:.1f} s, on {seconds['on']:.1f} s: ratio "
                  f"{seconds['on'] / seconds['off']:.3f} (target ≤ 1.05); checkpoint on disk {size / 2**20:.2f} MiB")
        last = 2  # the binary tasks: 3 experiences
        stopped, _ = timed([*base, "--checkpoint", "on"], work / "killed", [StopAtLast(last)])
        resumed, folder = timed([*base, "--checkpoint", "on"], work / "killed", [StopAtLast(-1)])  # same plugins
        whole = seconds["on"]
        same = (folder / "matrix.csv").read_bytes() == (on_folder / "matrix.csv").read_bytes()
        print(f"stopped at the start of experience {last} after {stopped:.1f} s; the resumed process took "
              f"{resumed:.1f} s = {resumed / whole:.2f} of the whole run's {whole:.1f} s (target < 0.5); "
              f"matrix.csv {'identical to' if same else 'DIFFERENT from'} the uninterrupted run's")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
