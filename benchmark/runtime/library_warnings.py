"""Library notices that fire on every run and bury real output, silenced before those libraries load."""

from __future__ import annotations

import warnings


def quiet_library_warnings() -> None:
    """Avalanche's deprecation notices and qpsolvers' "no QP solver" note fire on every run and bury real output."""
    warnings.filterwarnings("ignore", module=r"(avalanche|qpsolvers)(\..*)?")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
