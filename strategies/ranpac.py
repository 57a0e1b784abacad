"""RanPAC (McDonnell et al. 2023, "RanPAC: Random projections and pre-trained models for continual learning",
NeurIPS; the authors' RanPAC.py and PILOT's models/ranpac.py): a fixed random projection with a nonlinearity on the
frozen backbone's features, then a ridge-regression classifier solved in closed form from statistics accumulated over
every training sample seen.

    h = ReLU(f W)                 f ∈ R^D the backbone's pooled feature, W ∈ R^{D×M} with entries ~ N(0, 1), fixed
    G = Σ_i h_i h_iᵀ  (M × M)     C = Σ_i h_i y_iᵀ  (M × K)     y_i: one-hot over the K columns (every head's classes)
    Wo = (G + λ I)⁻¹ C            logits = h Wo  (head t: its columns; the authors' CosineLinear with use_RP: a plain
                                  product, σ = 1)

Statistics: each block's products in the run's dtype (float32, as the authors' throughout), accumulated across
blocks and experiences in float64; solved by Cholesky, or by LU (`torch.linalg.solve`, as the authors' code: "better
numerical stability than .inv") where G + λI is numerically indefinite.

λ. The authors pick it at every task from the log grid 10^-8 … 10^8 (17 values): fit on the first 80 % of the
task's (shuffled) training features, keep the λ with the least mean squared error of the one-hot targets on the other
20 %, then solve with the accumulated G and C. Here the same grid, split (each experience's samples: a random 20 %
held out, drawn from the strategy's own generator) and criterion, but the fit and the held-out error use every
experience seen so far, not the last one alone: G_fit = G − G_val, C_fit = C − C_val, and the held-out squared error
comes from accumulated statistics,

    Σ_val ‖y − Wᵀ h‖² = n_val − 2 tr(Wᵀ C_val) + tr(Wᵀ G_val W),    W = (G_fit + λ I)⁻¹ C_fit.

So λ is chosen on the data the final classifier is fitted on, never on the test split, and, for the same held-out
samples, the classifier depends on which samples were seen, not on the order of the experiences (a test; in a run
the held-out draws come from the generator in experience order, so another order may hold out other samples). The
authors' per-task choice would make it depend on which task came last.

Defaults: M = `--ranpac.projection-dim` 500; the paper (and PILOT) use M = 10000, which makes G 10⁴ × 10⁴ (800 MB in
float64) and each of the 18 solves per experience about 10¹² flops: minutes per experience on 2 CPU cores. With the
tiny ViT's 64-dimensional features, 500 random ReLU features lift the dimension 8-fold; on Split Fashion-MNIST 5 × 2
class-IL with the committed DINO weights M = 500 / 1000 / 2000 gave ACC 0.833 / 0.843 / 0.851 (seed 0), the cost
growing with M² (the statistics) and M³ (the solves): docs/pretrained-backbones.md. Entries of W ~ N(0, 1) (the
authors' torch.randn).

Left out: the paper's phase 1, a parameter-efficient adaptation (adapter / SSF / VPT) of the backbone on the first
task. This is the frozen-backbone RanPAC, the paper's ablation without phase 1 (RP and the ridge classifier on the
pretrained features alone; in the authors' code `model_name: ncm` with `use_RP: true`, which skips the first-session
training). Also left out: the authors' domain-incremental special cases (the shared head here simply accumulates
every domain's statistics).

On the Hat Swap network: the projection reads the backbone's features (the authors' `convnet(x)`), not the shared
layers' (untrained random layers here); the strategy's network is the backbone, W and a linear head per task
(strategies/common/closed_form.py). In task-IL one ridge problem covers every task's columns (each head reads its
own), so a new task's data changes G and every head's weights: it trains past heads (StrategyMeta).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.harness.scenarios import LABEL_KINDS
from benchmark.registry import STRATEGIES
from strategies.common.closed_form import ClosedFormNet, ClosedFormTemplate, training_free_budget

RIDGES = tuple(10.0 ** k for k in range(-8, 9))  # the authors' optimise_ridge_parameter grid
BLOCK = 4096  # samples per product when the statistics are added (N × M random features at a time)


@dataclass(frozen=True)
class RanPACConfig:
    projection_dim: int = 500  # M, the random features (the paper's 10000 does not fit 2 CPU cores: docstring)
    holdout: float = 0.2  # the fraction of each experience's samples held out to choose λ (the authors' 80/20)

    def __post_init__(self):
        if self.projection_dim < 1 or not 0 < self.holdout < 1:
            raise UserError(f"--ranpac.projection-dim must be ≥ 1 and --ranpac.holdout in (0, 1) (got "
                            f"{self.projection_dim}, {self.holdout})")


class LinearHead(nn.Module):
    """logits = r · weightᵀ, weight k × M: the head's columns of the ridge solution (set by the fit, no gradient)."""

    def __init__(self, k: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(k, width), requires_grad=False)

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        return F.linear(rep, self.weight)


def ridge_statistics(h: torch.Tensor, columns: torch.Tensor, held_out: torch.Tensor, n_columns: int) -> dict:
    """The contribution of samples with random features h (N × M, in the run's dtype), columns and held-out flags:
    G, C over all, G_val, C_val, n_val over the held-out ones: products in h's dtype, returned in float64."""
    y = F.one_hot(columns, n_columns).to(h.dtype)
    hv, yv = h[held_out], y[held_out]
    return {"G": (h.T @ h).double(), "C": (h.T @ y).double(), "G_val": (hv.T @ hv).double(),
            "C_val": (hv.T @ yv).double(), "n_val": torch.tensor(float(held_out.sum()), dtype=torch.float64)}


def held_out_errors(G_fit, C_fit, G_val, C_val, n_val, ridges=RIDGES) -> torch.Tensor:
    """Σ_val ‖y − Wᵀh‖² of W = (G_fit + λI)⁻¹ C_fit for each λ (the module docstring's formula). From the largest
    λ down: once G_fit + λI is numerically indefinite for one λ, it is for every smaller one (LU from there on)."""
    errors, definite = {}, True
    for lam in sorted(ridges, reverse=True):
        W, definite = ridge_solution(G_fit, C_fit, lam, try_cholesky=definite)
        errors[lam] = n_val - 2 * (W * C_val).sum() + (W * (G_val @ W)).sum()
    return torch.stack([errors[lam] for lam in ridges])


def choose_ridge(stats: dict, ridges=RIDGES) -> float:
    """The λ of the grid with the least held-out squared error (the first, on a tie)."""
    errors = held_out_errors(stats["G"] - stats["G_val"], stats["C"] - stats["C_val"], stats["G_val"],
                             stats["C_val"], stats["n_val"], ridges)
    return ridges[int(torch.argmin(errors))]


def ridge_solution(G: torch.Tensor, C: torch.Tensor, lam: float, try_cholesky: bool = True):
    """→ ((G + λI)⁻¹ C, M × K; whether Cholesky worked): by Cholesky (G + λI is symmetric positive definite, and a
    Cholesky solve costs half an LU's), by LU (`torch.linalg.solve`, the authors') where rounding makes it
    numerically indefinite (λ = 10⁻⁸ on a rank-deficient G) or `try_cholesky` is False."""
    A = G + lam * torch.eye(len(G), dtype=G.dtype, device=G.device)
    if try_cholesky:
        L, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            return torch.cholesky_solve(C, L), True
    return torch.linalg.solve(A, C), False


class RandomProjectionNet(ClosedFormNet):
    """The backbone, the fixed projection W (D × M, drawn at the first experience from the strategy's own generator)
    and a linear head per task; the ridge statistics (non-persistent: a saved model needs W and the heads only)."""

    def __init__(self, net, cfg: RanPACConfig):
        super().__init__(net, "ranpac")
        self.cfg, m, k = cfg, cfg.projection_dim, sum(self.head_dims)
        self.projection = nn.Parameter(torch.zeros(self.feat_dim, m), requires_grad=False)
        self.heads = nn.ModuleList(LinearHead(k_t, m) for k_t in self.head_dims)
        for name, shape in (("G", (m, m)), ("C", (m, k)), ("G_val", (m, m)), ("C_val", (m, k)), ("n_val", ()),
                            ("counts", (k,))):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64), persistent=False)
        self.ridges: list[float] = []  # the λ chosen after each experience
        self.held_out, self.pending = torch.zeros(0, dtype=torch.bool), []  # this experience's flags, features

    def checkpoint_state(self) -> dict:
        """Beyond the state_dict and the buffers (benchmark/harness/checkpoint.py): the λ of each experience so far
        (`held_out` and `pending` live within one experience's pass)."""
        return {"ridges": list(self.ridges)}

    def load_checkpoint_state(self, state: dict) -> None:
        self.ridges = list(state["ridges"])

    def represent(self, feats: torch.Tensor) -> torch.Tensor:
        return F.relu(feats @ self.projection)

    def start_experience(self, n: int, generator: torch.Generator) -> None:
        if not bool(self.projection.any()):  # drawn once, before the first experience's pass
            self.projection.copy_(torch.randn(self.projection.shape, generator=generator, dtype=torch.float64))
        n_val = n - int(n * (1 - self.cfg.holdout))  # the authors' int(0.8 N) fit samples, the rest held out
        self.held_out = torch.zeros(n, dtype=torch.bool)
        self.held_out[torch.randperm(n, generator=generator)[:n_val]] = True

    def accumulate(self, feats: torch.Tensor, columns: torch.Tensor) -> None:
        self.pending.append((feats, columns))  # the statistics come at fit(): one product per block, not per batch

    def add(self, h: torch.Tensor, columns: torch.Tensor, held_out: torch.Tensor) -> None:
        """Add samples' statistics (h: their random features, N × M) to G, C, G_val, C_val, n_val and the counts."""
        for name, value in ridge_statistics(h, columns, held_out.to(h.device), len(self.counts)).items():
            getattr(self, name).add_(value.to(self.G.device))
        self.counts.index_add_(0, columns.to(self.counts.device), torch.ones_like(columns, dtype=torch.float64,
                                                                                  device=self.counts.device))

    def fit(self) -> None:
        feats, columns = (torch.cat(part) for part in zip(*self.pending, strict=True))
        self.pending = []
        if len(columns) != len(self.held_out):
            raise RuntimeError(f"ranpac: the pass yielded {len(columns)} samples, its experience holds "
                               f"{len(self.held_out)}")
        for start in range(0, len(columns), BLOCK):
            rows = slice(start, start + BLOCK)
            self.add(self.represent(feats[rows]), columns[rows], self.held_out[rows])
        self.solve()

    def solve(self) -> None:
        """λ from the held-out statistics, then every head's weights from the whole G and C."""
        self.seen |= self.counts > 0
        lam = choose_ridge({name: getattr(self, name) for name in ("G", "C", "G_val", "C_val", "n_val")})
        self.ridges.append(lam)
        weights, _ = ridge_solution(self.G, self.C, lam)
        for t, head in enumerate(self.heads):
            head.weight.copy_(weights[:, self.offsets[t]: self.offsets[t] + self.head_dims[t]].T)


@STRATEGIES.register("ranpac", config_cls=RanPACConfig, training_free=True, task_kinds=LABEL_KINDS,
                     ptm=True, trains_past_heads=True, own_budget=training_free_budget)
def build_ranpac(cfg: RanPACConfig | None = None, plugins=(), *, model, **template_kwargs) -> ClosedFormTemplate:
    return ClosedFormTemplate(model=RandomProjectionNet(model, cfg or RanPACConfig()), name="ranpac",
                              plugins=list(plugins), **template_kwargs)
