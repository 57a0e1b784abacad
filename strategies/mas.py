"""Memory aware synapses (Aljundi et al. 2018): importance = how much the learnt function's output moves with
each parameter, measured without labels.

After experience k, on N ≤ `samples` of its inputs, with F(x) the sample's own task head's output,

    Ω_k,i = (1/N) Σ_x | ∂ ‖F(x)‖²₂ / ∂θ_i |

accumulated as Ω ← α Ω + (1 − α) Ω_k (Ω = Ω_1 after the first experience; α = ½ as Avalanche's MAS), and later
experiences train on  loss = CE + λ Σ_i Ω_i (θ_i − θ*_i)²,  θ* = θ after the last experience (the paper's form).
F is the task's own head (`forward_single_task`): the routed output pads other tasks' columns with −inf, whose norm
is not finite — why Avalanche's MASPlugin, which takes the norm of the whole output, does not fit this model.
Per-sample gradients as in the paper (Avalanche uses the gradient of a batch's mean). Default λ = 1 (Avalanche's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.errors import UserError
from benchmark.registry import STRATEGIES
from benchmark.runtime.randomness import own_generator
from benchmark.tuning.space import LogUniform, searchable
from strategies.common.importance import PenaltyPlugin, anchor, per_sample_importance, snapshot


@dataclass(frozen=True)
class MASConfig:
    mas_lambda: float = field(default=1.0, metadata=searchable(LogUniform(  # λ
        1e-2, 1e4, stability=True, source="Aljundi et al. 2018 use λ = 1; FACIL's and van de Ven's grids search "
        "decades around it")))
    alpha: float = 0.5  # α: weight of the old importances when a new experience's are added
    samples: int = 512  # inputs of each experience the importance is estimated on

    def __post_init__(self):
        if self.mas_lambda < 0 or not 0 <= self.alpha <= 1 or self.samples < 1:
            raise UserError(f"--mas.mas-lambda must be ≥ 0, --mas.alpha in [0, 1], --mas.samples ≥ 1 (got "
                            f"{self.mas_lambda}, {self.alpha}, {self.samples})")


def output_norm_score(model, x, y, t):
    out = model.forward_single_task(x, int(t[0]))
    return out.pow(2).sum(dim=1).mean(), lambda g: g.abs()


class MASPlugin(PenaltyPlugin):
    def __init__(self, cfg: MASConfig):
        super().__init__()
        self.cfg = cfg

    def weight(self) -> float:
        return self.cfg.mas_lambda

    def after_training_exp(self, strategy, **kwargs):
        new = per_sample_importance(strategy, self.cfg.samples, output_norm_score, own_generator(strategy, "mas"))
        if self.anchors:
            old, _ = self.anchors[0]
            new = {n: self.cfg.alpha * old.get(n, 0) + (1 - self.cfg.alpha) * v for n, v in new.items()}
        self.anchors = [anchor(new, snapshot(strategy.model))]


@STRATEGIES.register_plugins("mas", config_cls=MASConfig)
def mas_plugins(cfg: MASConfig, template_kwargs: dict) -> list:
    return [MASPlugin(cfg)]
