"""Figures (matplotlib, Agg backend, PNG): per run and per report.

Per run (written into the run folder):
    heatmap.png      R as tasks × evaluation points, every cell annotated (init row included, greyed)
    task_curves.png  each task's primary score across evaluation points, one line per task
    losses.png       mean training loss per epoch (experiences separated) and each task's held-out loss at every
                     evaluation point
Per report: a strategy comparison per stream (ACC and BWT, mean ± sample std over seeds as error bars) and the
seed-mean R heatmap per (stream, strategy); where a report has two or more streams, a critical-difference
diagram of the strategies' average ranks (benchmark/outputs/paired_stats.py).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Every figure's one way to a file: PNG at 110 dpi, trimmed, its folder made; the figure is closed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _short(name: str) -> str:
    """Task names as axis labels: 't0_trouser_vs_coat_sneaker' → two lines, each at most 22 characters."""
    return "\n".join(p if len(p) <= 22 else p[:21] + "…" for p in name.replace("_vs_", "\nvs ").split("\n"))


def heatmap(R, row_labels: list[str], task_names: list[str], path: Path, title: str = "",
            std=None) -> Path:
    """R: rows = evaluation points, columns = tasks; values in [0, 1] (primary scores)."""
    R = np.asarray(R, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * R.shape[1], 1.0 + 0.55 * R.shape[0]))
    im = ax.imshow(R, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            text = f"{R[i, j]:.3f}" + (f"\n±{std[i][j]:.3f}" if std is not None else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if R[i, j] > 0.6 else "white")
    ax.set_xticks(range(R.shape[1]), [_short(t) for t in task_names], fontsize=8)
    ax.set_yticks(range(R.shape[0]), row_labels, fontsize=8)
    ax.set_xlabel("task (score)")
    ax.set_ylabel("evaluated after")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)


def task_curves(rows: list[tuple[str, list[float]]], task_names: list[str], path: Path, title: str = "",
                ylabel: str = "accuracy") -> Path:
    labels = [label for label, _ in rows]
    values = np.asarray([r for _, r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for j, name in enumerate(task_names):
        ax.plot(range(len(labels)), values[:, j], marker="o", label=_short(name))
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("evaluation point")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def losses(epoch_loss: list[list[float]], eval_rows: list[tuple[str, list[float]]], task_names: list[str],
           path: Path, title: str = "") -> Path:
    """epoch_loss: per experience, the mean training loss of each epoch; eval_rows: (label, held-out loss per task)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = 0
    for k, losses_k in enumerate(epoch_loss):
        xs = list(range(x + 1, x + len(losses_k) + 1))
        a.plot(xs, losses_k, marker="o", label=f"experience {k}" if len(epoch_loss) > 1 else "joint")
        x += len(losses_k)
        if k < len(epoch_loss) - 1:
            a.axvline(x + 0.5, color="grey", lw=0.8, ls=":")
    a.set_xlabel("epoch (cumulative)")
    a.set_ylabel("mean training loss")
    a.set_title("train loss", fontsize=9)
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    labels = [label for label, _ in eval_rows]
    vals = np.asarray([r for _, r in eval_rows], dtype=float)
    for j, name in enumerate(task_names):
        b.plot(range(len(labels)), vals[:, j], marker="o", label=_short(name))
    b.set_xticks(range(len(labels)), labels, fontsize=8)
    b.set_ylabel("held-out loss (test split)")
    b.set_title("val loss per task", fontsize=9)
    b.grid(alpha=0.3)
    b.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def strategy_comparison(agg, stream: str, path: Path) -> Path:
    """agg: the report's aggregate frame (one row per strategy) with acc_mean/acc_std/bwt_mean/bwt_std."""
    df = agg[agg["stream"] == stream].sort_values("strategy")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric, label in zip(axes, ("acc", "bwt"), ("ACC (final mean score)", "BWT (< 0 = forgetting)"),
                                 strict=True):
        means = df[f"{metric}_mean"].to_numpy(dtype=float)
        stds = np.nan_to_num(df[f"{metric}_std"].to_numpy(dtype=float))
        pos = np.arange(len(df))
        defined = ~np.isnan(means)
        ax.bar(pos[defined], means[defined], yerr=stds[defined], capsize=4, color="tab:blue", alpha=0.8)
        for p in pos[~defined]:
            ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(pos, df["strategy"], fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{stream}: mean ± sample std over seeds (n = {', '.join(map(str, df['n_seeds']))})", fontsize=9)
    return save_figure(fig, path)


def critical_difference(ranks, cd: float, groups: list[list[str]], path: Path, title: str = "") -> Path:
    """Demšar's critical-difference diagram: each strategy at its average rank (1 = best, on the left), a bar of
    length CD, and a thick line under every group of strategies whose ranks lie within CD (not told apart)."""
    names, values = list(ranks.index), np.asarray(ranks, dtype=float)
    k = len(names)
    half = (k + 1) // 2  # the best half labelled on the left, the rest on the right
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.3 * half))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(half + 0.8), 2.2)
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.25, color="black", lw=1)
        ax.text(r, 0.45, str(r), ha="center", va="bottom", fontsize=8)
    ax.hlines(1.5, 1, 1 + cd, color="black", lw=2)
    ax.text(1 + cd / 2, 1.65, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        left = i < half
        y = -(i + 1) if left else -(k - i)
        edge = 0.6 if left else k + 0.4
        ax.plot([value, value, edge], [0, y, y], color="tab:blue", lw=0.8)
        ax.text(edge, y, f"{name} ({value:.2f})", ha="left" if not left else "right", va="center", fontsize=8,
                transform=ax.transData, clip_on=False)
    for j, group in enumerate(groups):
        lo, hi = float(ranks[group].min()), float(ranks[group].max())
        ax.hlines(-0.35 - 0.3 * j, lo - 0.03, hi + 0.03, color="black", lw=3)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def run_figures(folder: Path, rows, loss_rows, epoch_loss, task_names: list[str], tag: str) -> None:
    """The three per-run figures, from what the harness collected (rows: (label, scores) incl. 'init')."""
    folder = Path(folder)
    heatmap([r for _, r in rows], [label for label, _ in rows], task_names, folder / "heatmap.png",
            title=f"{tag}: R (primary score per task)")
    task_curves(rows, task_names, folder / "task_curves.png", title=f"{tag}: score per task")
    losses(epoch_loss, loss_rows, task_names, folder / "losses.png", title=tag)
