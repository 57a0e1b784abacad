"""SimpleCIL (Zhou et al. 2023, "Revisiting class-incremental learning with pre-trained models: generalizability and
adaptivity are all you need", IJCV 2024; PILOT's models/simplecil.py): a prototype classifier on the frozen
backbone's features, with no training at all.

After each experience, every class c seen in it gets its prototype, the mean backbone feature of its training
samples (PILOT's `replace_fc`: `embedding.mean(0)` over the class's training images, read with the test transform),

    p_c = (1 / n_c) Σ_{i: y_i = c} f(x_i)                f(x) ∈ R^D: the backbone's pooled feature (B × D)

and the classifier is the cosine similarity of the ℓ2-normalised feature and prototypes (PILOT's CosineLinear:
`F.linear(F.normalize(x), F.normalize(W))`, times σ),

    logit_c(x) = s · ⟨f(x) / ‖f(x)‖, p_c / ‖p_c‖⟩        s = `--simplecil.scale`, default 1

s = 1: PILOT's CosineLinear initialises its σ to 1 and SimpleCIL never trains it. The argmax, hence every accuracy,
does not depend on s; only the held-out cross-entropy does. Prototypes are running sums and counts, so a class that
comes back in a later experience (domain-IL's shared head) gets the mean over all its samples seen so far, the same
direction as the summed prototype RanPAC's code keeps for domain-incremental streams.

On the Hat Swap network (backbone → shared layers → heads): the prototypes are of the backbone's features, as PILOT
takes `model.convnet(x)` (the ViT's [CLS] feature), not of the shared layers' output: those are untrained random
layers here, and a prototype of them would measure a random projection, not the pretrained representation. The
strategy's network is the backbone and a prototype head per task (strategies/common/closed_form.py); the run's
--hidden layers and heads are not used (the budget counts what is: the backbone and the prototypes).

Scenarios: task-IL (each head = its task's classes' prototypes), class-IL (one head over every class, a class's
logit −inf until its experience has been seen), domain-IL (one head, means over every domain). Training-free: one
pass without gradients over each experience's data, no optimizer step (StrategyMeta.training_free); on cached
features (benchmark/harness/feature_cache.py) a run takes seconds. --backbone-mode finetune or last-k is refused:
nothing would train them. Left out: PILOT's other SimpleCIL variant (APER, "adapt then merge") adapts the backbone
on the first task; that is a different method.
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


@dataclass(frozen=True)
class SimpleCILConfig:
    scale: float = 1.0  # s: logits = s · cosine (PILOT's CosineLinear σ, initialised to 1, never trained here)

    def __post_init__(self):
        if not self.scale > 0:
            raise UserError(f"--simplecil.scale must be > 0 (got {self.scale})")


class CosineHead(nn.Module):
    """logits = s · normalize(r) · normalize(P)ᵀ, P = the head's k × D prototypes (a parameter that no gradient or
    optimizer touches: its value is set by the fit). A zero prototype (class not seen) gives cosine 0."""

    def __init__(self, k: int, width: int, scale: float):
        super().__init__()
        self.prototypes = nn.Parameter(torch.zeros(k, width), requires_grad=False)
        self.scale = scale

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(rep, dim=1), F.normalize(self.prototypes, dim=1))


class PrototypeNet(ClosedFormNet):
    """The backbone and a cosine head of class-mean prototypes per task. Sums and counts (non-persistent: a saved
    model needs only the prototypes) accumulate over every experience."""

    def __init__(self, net, cfg: SimpleCILConfig):
        super().__init__(net, "simplecil")
        self.heads = nn.ModuleList(CosineHead(k, self.feat_dim, cfg.scale) for k in self.head_dims)
        n = sum(self.head_dims)
        self.register_buffer("sums", torch.zeros(n, self.feat_dim, dtype=torch.float64), persistent=False)
        self.register_buffer("counts", torch.zeros(n, dtype=torch.float64), persistent=False)

    def accumulate(self, feats: torch.Tensor, columns: torch.Tensor) -> None:
        self.sums.index_add_(0, columns, feats.to(torch.float64))
        self.counts.index_add_(0, columns, torch.ones_like(columns, dtype=torch.float64))

    def fit(self) -> None:
        self.seen |= self.counts > 0
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1)
        for t, head in enumerate(self.heads):
            rows = slice(self.offsets[t], self.offsets[t] + self.head_dims[t])
            if bool(self.seen[rows].any()):  # a head not reached keeps its prototypes bit for bit
                head.prototypes.copy_(means[rows].to(head.prototypes.dtype))


@STRATEGIES.register("simplecil", config_cls=SimpleCILConfig, training_free=True, task_kinds=LABEL_KINDS,
                     ptm=True, own_budget=training_free_budget)
def build_simplecil(cfg: SimpleCILConfig | None = None, plugins=(), *, model, **template_kwargs) -> ClosedFormTemplate:
    return ClosedFormTemplate(model=PrototypeNet(model, cfg or SimpleCILConfig()), name="simplecil",
                              plugins=list(plugins), **template_kwargs)
