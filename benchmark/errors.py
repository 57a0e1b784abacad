"""Errors a user can fix. The CLI prints them as one line (no traceback unless --debug) and exits non-zero."""

import math


class UserError(Exception):
    """Bad input or a missing resource; the message names the fix. Exit code 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run that started but could not finish (e.g. a non-finite loss). Exit code 3; nothing is written."""

    exit_code = 3


def check_finite_losses(losses: dict[str, float], where: str, knobs: tuple[str, ...] = ()) -> None:
    """Stop a run at its first NaN/inf training loss (continual and multi-task runs alike): its results would be
    meaningless and must not be written. `where`: 'at experience 1, epoch 0, iteration 3'; `knobs`: flags besides
    --lr that scale the loss (`--ewc.ewc-lambda 1e+308`), named as suspects so the message never blames the lr
    alone."""
    if bad := {name: value for name, value in losses.items() if not math.isfinite(value)}:
        fix = (f"lower --lr or a strategy knob that may be too large ({', '.join(knobs)}), or check the data"
               if knobs else "try a lower --lr or check the data")
        raise RunFailed(f"non-finite training loss ({', '.join(f'{k} {v}' for k, v in bad.items())}) {where}; {fix}")
