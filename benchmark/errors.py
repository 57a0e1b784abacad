"""Errors a user can fix. The CLI prints them as one line (no traceback unless --debug) and exits non-zero. A file a
user hands in as JSON (a profile, a config file, a tuned record) is read here, so a broken one is such an error."""

import json
import math
from pathlib import Path


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


def read_json_object(path: Path, what: str, holding: str = "") -> dict:
    """A profile's, config file's or tuned record's JSON object; unreadable, malformed (which line and column) or not
    an object is one UserError naming `what`, the file."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read {what}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} must hold a JSON object{holding}")
    return data
