"""Tensor-factorised task weights (Yang & Hospedales 2017, "Deep Multi-task Representation Learning: A Tensor
Factorisation Approach", ICLR), Tucker form.

Every task has its own MLP of `shared_layers` over the backbone's pooled features; layer j's task weights, stacked,
form a tensor 𝒲_j (w_{j−1} × w_j × T) that is never stored, only its Tucker factors:

    𝒲_j = 𝒮_j ×₁ U_in ×₂ U_out ×₃ U_task,     W_t[a, b] = Σ_{p,q,s} 𝒮[p, q, s] U_in[a, p] U_out[b, q] U_task[t, s]

with the core 𝒮_j (r_in × r_out × r_T) and U_in, U_out shared by every task (what is shared) and row t of U_task
task t's own coefficients. h_t^j = act(h_t^{j−1} W_t^j + b_t^j). Ranks: r_in = min(rank, w_{j−1}), r_out = min(rank,
w_j), r_T = min(task_rank, T) (0 = T). Initialisation as the paper's (which factorises single-task networks' weights):
the tensor of T freshly initialised layers (nn.Linear's init), truncated by the higher-order SVD (each U = the
leading left singular vectors of that mode's unfolding, 𝒮 = 𝒲 ×₁ U_inᵀ ×₂ U_outᵀ ×₃ U_taskᵀ); at full ranks the
factors reproduce those layers exactly (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.layers import block_tail
from benchmark.mtl.architectures.base import Architecture, ArchSpec, BackboneFactory
from benchmark.mtl.registries import ARCHITECTURES


@dataclass(frozen=True)
class TensorFactorisationConfig:
    rank: int = 16  # r_in and r_out (capped by the widths)
    task_rank: int = 0  # r_T; 0 = the number of tasks (full rank over tasks)

    def __post_init__(self):
        if self.rank < 1 or self.task_rank < 0:
            raise UserError(f"--tensor-factorisation.rank must be ≥ 1 and --tensor-factorisation.task-rank ≥ 0, "
                            f"got {self.rank}, {self.task_rank}")


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-n unfolding: the mode's index as rows, every other index flattened as columns."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def tucker_weights(core: torch.Tensor, u_in: torch.Tensor, u_out: torch.Tensor, u_task: torch.Tensor) -> torch.Tensor:
    """𝒮 ×₁ U_in ×₂ U_out ×₃ U_task → w_in × w_out × T."""
    return torch.einsum("pqs,ap,bq,ts->abt", core, u_in, u_out, u_task)


def hosvd(tensor: torch.Tensor, ranks: tuple[int, int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Truncated higher-order SVD → (core, [U per mode])."""
    factors = [torch.linalg.svd(unfold(tensor, m), full_matrices=False)[0][:, :r] for m, r in enumerate(ranks)]
    core = torch.einsum("abt,ap,bq,ts->pqs", tensor, *factors)
    return core, factors


class TuckerLayer(nn.Module):
    def __init__(self, w_in: int, w_out: int, T: int, rank: int, task_rank: int):
        super().__init__()
        layers = [nn.Linear(w_in, w_out) for _ in range(T)]
        stacked = torch.stack([layer.weight.detach().T for layer in layers], dim=-1)  # w_in × w_out × T
        core, (u_in, u_out, u_task) = hosvd(stacked, (min(rank, w_in), min(rank, w_out), min(task_rank or T, T)))
        self.core, self.u_in, self.u_out = (nn.Parameter(p.contiguous()) for p in (core, u_in, u_out))
        # task t's own: its row of U_task and its bias (one Parameter each: only task t's loss reaches them)
        self.u_task = nn.ParameterList(nn.Parameter(row.clone()) for row in u_task)
        self.bias = nn.ParameterList(nn.Parameter(layer.bias.detach().clone()) for layer in layers)

    def weights(self) -> torch.Tensor:
        return tucker_weights(self.core, self.u_in, self.u_out, torch.stack(list(self.u_task)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: T×B×w_in → T×B×w_out, task t through W_t."""
        return torch.einsum("tbi,iot->tbo", h, self.weights()) + torch.stack(list(self.bias))[:, None, :]


class TensorFactorisation(Architecture):
    def __init__(self, cfg: TensorFactorisationConfig, spec: ArchSpec, make_backbone: BackboneFactory):
        super().__init__()
        self.tasks = spec.tasks
        self.backbone = make_backbone()
        if self.backbone.dim is None:  # the HOSVD of the stacked initial weights needs their shape
            raise UserError("tensor-factorisation sizes its Tucker factors by the input width: pass in_features=F "
                            "(or a backbone)")
        T, ins = len(spec.tasks), (self.backbone.dim, *spec.shared_layers[:-1])
        self.layers = nn.ModuleList(TuckerLayer(w_in, w, T, cfg.rank, cfg.task_rank)
                                    for w_in, w in zip(ins, spec.shared_layers, strict=True))
        n = len(self.layers)
        self.after = nn.ModuleList(nn.Sequential(*block_tail(j, n, spec.dropout, spec.dropout_at, spec.activation))
                                   for j in range(n))
        self.out_dim = spec.shared_layers[-1]

    def forward(self, x):
        z = self.backbone.pooled(self.backbone(x))
        h = torch.stack([z] * len(self.tasks))
        for layer, after in zip(self.layers, self.after, strict=True):
            h = after(layer(h))
        return {t: h[k] for k, t in enumerate(self.tasks)}

    def shared_parameters(self):
        return [*self.backbone.parameters(), *(p for layer in self.layers for p in (layer.core, layer.u_in,
                                                                                    layer.u_out))]

    def last_shared_parameters(self):
        last = self.layers[-1]
        return [last.core, last.u_in, last.u_out]


@ARCHITECTURES.register("tensor-factorisation", config_cls=TensorFactorisationConfig, lazy_input=False)
def build(cfg: TensorFactorisationConfig, spec: ArchSpec, make_backbone: BackboneFactory) -> TensorFactorisation:
    return TensorFactorisation(cfg or TensorFactorisationConfig(), spec, make_backbone)
