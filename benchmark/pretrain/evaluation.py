"""How good are a backbone's frozen features? k-NN and linear-probe accuracy on a source's labelled splits, with
random-init features and raw pixels on the same images beside them.

k-NN (Wu et al. 2018, as DINO's eval_knn.py): features L2-normalised; for a test feature q, its k nearest train
features by cosine similarity s_i = q·x_i vote for their labels with weight exp(s_i / T):

    ŷ(q) = argmax_c Σ_{i ∈ top-k(q)} exp(s_i / T)·[y_i = c]          (k = 20, T = 0.07)

Linear probe: multinomial logistic regression on the features standardised with the train split's mean and std,
W and b fitted by full-batch L-BFGS (zero init, deterministic) on mean cross-entropy + λ‖W‖², λ = 1e-4.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

PROBE_L2, PROBE_MAX_ITER = 1e-4, 100


@torch.no_grad()
def extract(backbone: nn.Module, images: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """N×C×H×W → N×D, the backbone in eval mode."""
    backbone = backbone.to(device).eval()
    return torch.cat([backbone(images[i:i + batch].to(device)).float().cpu() for i in range(0, len(images), batch)])


@torch.no_grad()
def knn_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, n_classes: int, k: int = 20,
                temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """→ the predicted label of every test row (module docstring); k is capped at the number of train rows."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    k = min(k, len(train_f))
    out = []
    for i in range(0, len(test_f), chunk):
        sim, idx = (test_f[i:i + chunk] @ train_f.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), n_classes, dtype=sim.dtype)
        votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
        out.append(votes.argmax(dim=1))
    return torch.cat(out)


def linear_probe_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                         n_classes: int) -> torch.Tensor:
    """→ the predicted label of every test row from a logistic regression fitted on the train rows."""
    mean, std = train_f.mean(0), train_f.std(0).clamp_min(1e-6)
    x, x_test = (train_f - mean) / std, (test_f - mean) / std
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=PROBE_MAX_ITER, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, train_y) + PROBE_L2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (x_test @ w + b).argmax(dim=1)


def accuracies(train_f, train_y, test_f, test_y, n_classes: int, k: int, temperature: float) -> dict:
    knn = knn_predict(train_f, train_y, test_f, n_classes, k, temperature)
    linear = linear_probe_predict(train_f, train_y, test_f, n_classes)
    return {"knn_top1": float((knn == test_y).float().mean()), "linear_top1": float((linear == test_y).float().mean()),
            "feature_dim": int(train_f.shape[1])}


def evaluate(backbones: dict[str, nn.Module], train: tuple, test: tuple, n_classes: int, k: int,
             temperature: float, batch: int, device: torch.device, subsets: dict | None = None) -> tuple[dict, dict]:
    """backbones: name → module; train/test: (images N×C×H×W, labels N); subsets: label → train row indices.
    → ({name: accuracies}, {label: {name: accuracies}}): the probes trained on every train row, and on each subset's
    rows only (the same features: a subset's scores equal those of a run given only its images), "raw pixels" (the
    flattened images) beside the backbones."""
    (train_x, train_y), (test_x, test_y) = train, test
    features = {name: (extract(backbone, train_x, batch, device), extract(backbone, test_x, batch, device))
                for name, backbone in backbones.items()}
    features["raw pixels"] = (train_x.flatten(1), test_x.flatten(1))
    rows = {name: accuracies(f, train_y, g, test_y, n_classes, k, temperature) for name, (f, g) in features.items()}
    subset_rows = {label: {name: accuracies(f[idx], train_y[idx], g, test_y, n_classes, k, temperature)
                           for name, (f, g) in features.items()} for label, idx in (subsets or {}).items()}
    return rows, subset_rows


def table(rows: dict) -> str:
    lines = ["| features | dim | k-NN top-1 | linear probe top-1 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['feature_dim']} | {100 * r['knn_top1']:.2f} % | {100 * r['linear_top1']:.2f} % |"
              for name, r in rows.items()]
    return "\n".join(lines)


def show(rows: dict) -> None:
    print(table(rows), file=sys.stderr)
