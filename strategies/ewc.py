"""Elastic weight consolidation (Kirkpatrick et al. 2017), and its online form (Schwarz et al. 2018).

After each experience k, the diagonal empirical Fisher information of its data at the trained θ*_k,

    F_k,i = (1/N) Σ_x (∂ log p(y | x, t) / ∂θ_i)²         (N ≤ `fisher_samples` samples, one gradient each)

and while training later experiences

    separate  loss = CE + Σ_{k<now}  ½ λ Σ_i F_k,i (θ_i − θ*_k,i)²       (one penalty per past task, as the paper)
    online    loss = CE + ½ λ Σ_i F̃_i (θ_i − θ*_i)²,  F̃ ← γ F̃ + F_k,  θ* = θ after the last experience

log p(y | x, t) is the sample's own task's log-likelihood (our criterion on its routed output; the dense suite's
kinds give their own loss, so there it is that loss's gradient). Avalanche's EWCPlugin estimates F from
mini-batch gradients (the square of a batch mean, not the mean of per-sample squares) and drops the ½; hence this
plugin. Defaults: Mammoth's best EWC-on arguments for Seq-CIFAR-10 (e_lambda 10, γ 1; Mammoth's penalty has no ½,
so λ = 2 × 10), online mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import own_generator
from benchmark.tuning.space import LogUniform, searchable
from strategies.common.importance import PenaltyPlugin, anchor, per_sample_importance, snapshot


@dataclass(frozen=True)
class EWCConfig:
    ewc_lambda: float = field(default=20.0, metadata=searchable(LogUniform(  # λ in ½ λ Σ F (θ − θ*)²
        1e0, 1e6, stability=True, source="van de Ven, Tuytelaars & Tolias 2022 search EWC's λ over decades "
        "from 1; Mammoth's Seq-CIFAR-10 value is 10; 1e6 is where the penalty dominates the loss here")))
    mode: str = "online"  # online | separate
    decay: float = 1.0  # γ of the online mode
    fisher_samples: int = 512  # samples of each experience the Fisher is estimated on

    def __post_init__(self):
        if self.mode not in ("online", "separate"):
            raise UserError(f"--ewc.mode must be online or separate, got {self.mode!r}")
        if self.ewc_lambda < 0 or not 0 <= self.decay <= 1 or self.fisher_samples < 1:
            raise UserError(f"--ewc.ewc-lambda must be ≥ 0, --ewc.decay in [0, 1], --ewc.fisher-samples ≥ 1 (got "
                            f"{self.ewc_lambda}, {self.decay}, {self.fisher_samples})")


def fisher_score(criterion):
    def score(model, x, y, t):
        return criterion(model(x, t), y), lambda g: g**2  # −log p(y|x) = the CE of one sample
    return score


class EWCPlugin(PenaltyPlugin):
    def __init__(self, cfg: EWCConfig):
        super().__init__()
        self.cfg = cfg

    def weight(self) -> float:
        return 0.5 * self.cfg.ewc_lambda

    def after_training_exp(self, strategy, **kwargs):
        fisher = per_sample_importance(strategy, self.cfg.fisher_samples, fisher_score(strategy._criterion),
                                       own_generator(strategy, "ewc"))
        star = snapshot(strategy.model)
        if self.cfg.mode == "separate" or not self.anchors:
            if self.cfg.mode == "online":
                self.anchors = [anchor(fisher, star)]
            else:
                self.anchors.append(anchor(fisher, star))
            return
        old, _ = self.anchors[0]
        self.anchors = [anchor({n: self.cfg.decay * old.get(n, 0) + f for n, f in fisher.items()}, star)]


@STRATEGIES.register_plugins("ewc", config_cls=EWCConfig)
def ewc_plugins(cfg: EWCConfig, template_kwargs: dict) -> list:
    return [EWCPlugin(cfg)]
