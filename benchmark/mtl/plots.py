"""Multi-task figures: per run, the loss and gradient curves; per report, every experiment's validation-loss curve."""

from __future__ import annotations

from pathlib import Path

from benchmark.outputs.plots import plt, save_figure


def loss_curves(epochs: list[dict], tasks: list[str], path: Path, title: str = "") -> Path:
    """Left: weighted train and val loss (Σ_t w_t L_t) per epoch; right: each task's train (solid) and val (dashed)
    loss, unweighted, log scale (reconstruction MSE and CE differ in scale)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = [e["epoch"] + 1 for e in epochs]
    a.plot(xs, [e["train_total"] for e in epochs], marker="o", label="train")
    a.plot(xs, [e["val_total"] for e in epochs], marker="s", ls="--", label="val")
    a.set_xlabel("epoch")
    a.set_ylabel("weighted loss Σ w_t L_t")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    for k, t in enumerate(tasks):
        color = f"C{k}"
        tr = [(e["epoch"] + 1, e["train_loss"][t]) for e in epochs if t in e["train_loss"]]
        va = [(e["epoch"] + 1, e["val_loss"][t]) for e in epochs if t in e["val_loss"]]
        if tr:
            b.plot(*zip(*tr, strict=True), color=color, marker="o", label=f"{t} train")
        if va:
            b.plot(*zip(*va, strict=True), color=color, ls="--", label=f"{t} val")
    b.set_yscale("log")
    b.set_xlabel("epoch")
    b.set_ylabel("task loss (unweighted)")
    b.grid(alpha=0.3)
    b.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)



def gradient_curves(epochs: list[dict], path: Path, title: str = "") -> Path | None:
    """Left: each task's gradient norm at the last shared layer per epoch; right: each pair's gradient cosine on
    every shared parameter (solid) and at the last shared layer (dashed). None when nothing is shared."""
    records = [e.get("gradients") or {} for e in epochs]
    if not any(records):
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = [e["epoch"] + 1 for e in epochs]
    for k, t in enumerate(records[-1].get("last_shared_norm", {})):
        a.plot(xs, [r["last_shared_norm"][t] for r in records], color=f"C{k}", marker="o", label=t)
    a.set_xlabel("epoch")
    a.set_ylabel("‖∇ L_t‖ at the last shared layer")
    a.set_yscale("log")
    for k, pair in enumerate(records[-1].get("shared_cosine", {})):
        b.plot(xs, [r["shared_cosine"][pair] for r in records], color=f"C{k}", marker="o", label=f"{pair} shared")
        if pair in records[-1].get("last_shared_cosine", {}):
            b.plot(xs, [r["last_shared_cosine"][pair] for r in records], color=f"C{k}", ls="--", label=f"{pair} last")
    b.axhline(0, color="grey", lw=0.8)
    b.set_xlabel("epoch")
    b.set_ylabel("gradient cosine between tasks")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)

def val_curves(curves: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """curves: experiment → weighted validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (name, ys) in enumerate(curves.items()):  # 60+ curves: cycle line styles too, or colours repeat unreadably
        ax.plot(range(1, len(ys) + 1), ys, label=name, lw=1, ls=("-", "--", ":")[k // 10 % 3])
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted val loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes, not over them
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
