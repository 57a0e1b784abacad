"""The plugin that applies a continual tuning's per-experience values (`--tuned` with a record of `hatswap tune
--protocol continual`; the protocol itself: continual.py). Its own module: a run needs it (record.py's
experience_plugins), and the run must not import the search."""

from __future__ import annotations

import dataclasses

from avalanche.core import SupervisedPlugin

from benchmark.errors import UserError
from benchmark.runtime.state import Stateful


class ExperienceKnobs(Stateful, SupervisedPlugin):
    """Experience i trains with schedule[i]: `lr` (every optimizer group scaled alike) and strategy knobs
    (`ewc.ewc_lambda`: the plugin holding that config's field gets it)."""

    state_attrs, rebuilt_attrs = ("trained",), ("schedule",)

    def __init__(self, schedule: list[dict]):
        super().__init__()
        self.schedule, self.trained = schedule, 0

    def before_training_exp(self, strategy, **kwargs):
        from benchmark.harness.harness_plugins import EpochLR
        from benchmark.registry import STRATEGIES

        values = self.schedule[min(self.trained, len(self.schedule) - 1)]
        for key, value in values.items():
            if key == "lr":  # a schedule's base too (EpochLR re-reads it: its factors apply to this lr)
                for group in strategy.optimizer.param_groups:
                    group.setdefault("hatswap_ratio", group["lr"] / strategy.optimizer.defaults["lr"])
                    group["lr"] = group["initial_lr"] = value * group["hatswap_ratio"]
                for p in strategy.plugins:
                    if isinstance(p, EpochLR):
                        p.base = None
                continue
            part, _, knob = key.partition(".")
            owners = [p for p in strategy.plugins if isinstance(getattr(p, "cfg", None),
                                                                 STRATEGIES.get(part).config_cls)]
            if not owners:
                raise UserError(f"no plugin of this strategy has the knob {key}")
            for p in owners:
                p.cfg = dataclasses.replace(p.cfg, **{knob: value})

    def after_training_exp(self, strategy, **kwargs):
        self.trained += 1
