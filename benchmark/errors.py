"""Errors a user can fix. The CLI prints them as one line (no traceback unless --debug) and exits non-zero."""


class UserError(Exception):
    """Bad input or a missing resource; the message names the fix. Exit code 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run that started but could not finish (e.g. a non-finite loss). Exit code 3; nothing is written."""

    exit_code = 3
