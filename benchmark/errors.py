"""Errors a user can fix. The CLI prints them as one line (no traceback unless --debug) and exits non-zero."""

import math


class UserError(Exception):
    """Bad input or a missing resource; the message names the fix. Exit code 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run that started but could not finish (e.g. a non-finite loss). Exit code 3; nothing is written."""

    exit_code = 3


def check_finite_losses(losses: dict[str, float], where: str) -> None:
    """Stop a run at its first NaN/inf training loss (continual and multi-task runs alike): its results would be
    meaningless and must not be written. `where`: 'at experience 1, epoch 0, iteration 3'."""
    if bad := {name: value for name, value in losses.items() if not math.isfinite(value)}:
        raise RunFailed(f"non-finite training loss ({', '.join(f'{k} {v}' for k, v in bad.items())}) {where}; try "
                        f"a lower --lr or check the data")
