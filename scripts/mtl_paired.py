"""Paired differences between the experiments of one multi-task batch (e.g. `mtl-conv`), seed by seed.

For each pair "B-A" given and each metric, d_s = metric(B, seed s) − metric(A, seed s) over the seeds both ran
(the same seed draws the same data sample and initial weights in both), with the 95 % t-interval of the mean, a
paired t-test below 6 seeds (Wilcoxon from 6) and Holm's correction over the pairs of one metric
(benchmark/outputs/paired_stats.py). A Markdown table on stdout.

Metrics: val_loss, train_loss (the weighted objective Σ w_t L_t of the last epoch, summary.json), gap (val_loss −
train_loss), val_loss:<task> (the task's own validation loss after the last epoch, unweighted), <task> (its primary
test metric).

    .venv/bin/python scripts/mtl_paired.py RESULTS --pairs exp3-exp1,exp2-exp1 [--metrics val_loss,val_loss:classes]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.mtl.report import collect  # noqa: E402
from benchmark.outputs.paired_stats import holm, paired_differences, paired_test  # noqa: E402


def metric(run: dict, name: str) -> float:
    """One number of a run (see the module docstring); NaN where the run has no such metric."""
    if name in ("val_loss", "train_loss"):
        return float(run[name])
    if name == "gap":
        return float(run["val_loss"]) - float(run["train_loss"])
    if name.startswith("val_loss:"):
        return float(run["epochs"][-1]["val_loss"].get(name.split(":", 1)[1], math.nan))
    scores = dict(zip(run["tasks"], run["final"], strict=True))
    return float(scores.get(name, math.nan))


def compare(out_dir: Path, pairs: list[tuple[str, str]], metrics: list[str]) -> str:
    runs = collect(out_dir)
    by_name: dict[str, dict[int, dict]] = {}
    for r in runs:
        by_name.setdefault(r["name"], {})[r["seed"]] = r
    if missing := sorted({n for pair in pairs for n in pair} - set(by_name)):
        raise SystemExit(f"no runs of {missing} under {out_dir}/mtl/runs; experiments: {sorted(by_name)}")
    lines = []
    for m in metrics:
        rows = []
        for b, a in pairs:
            va = {s: metric(r, m) for s, r in by_name[a].items()}
            vb = {s: metric(r, m) for s, r in by_name[b].items()}
            if all(math.isnan(v) for v in (*va.values(), *vb.values())):
                continue
            rows.append((b, a, _mean(va), _mean(vb), paired_test(paired_differences(vb, va))))
        if not rows:
            continue
        corrected = holm([r[4]["p"] for r in rows])
        lines += [f"**{m}**: B − A, paired by seed", "",
                  "| B | A | mean A | mean B | B − A [95 % CI] | n | test | p | Holm p |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for (b, a, ma, mb, t), ph in zip(rows, corrected, strict=True):
            lines.append(f"| {b} | {a} | {ma:.4f} | {mb:.4f} | {t['mean_diff']:+.4f} [{t['ci_low']:+.4f}, "
                         f"{t['ci_high']:+.4f}] | {t['n']} | {t['test'] or '–'} | {_p(t['p'])} | {_p(ph)} |")
        lines.append("")
    return "\n".join(lines)


def _mean(values: dict[int, float]) -> float:
    finite = [v for v in values.values() if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _p(p: float) -> str:
    return "–" if p != p else f"{p:.3f}" if p >= 0.001 else "<0.001"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the batch's --out-dir (holding mtl/runs)")
    parser.add_argument("--pairs", required=True, help="comma-separated B-A pairs of experiment names (split at the "
                        "first '-' followed by 'exp', so names may hold '-': exp3-weights1-exp1)")
    parser.add_argument("--metrics", default="val_loss,train_loss,gap")
    args = parser.parse_args(argv)
    pairs = []
    for text in args.pairs.split(","):
        b, sep, a = text.strip().partition("-exp")
        if not sep:
            parser.error(f"a pair is B-A with A starting 'exp', got {text!r}")
        pairs.append((b, "exp" + a))
    print(compare(args.results, pairs, [m.strip() for m in args.metrics.split(",") if m.strip()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
