"""Strategies (registry `STRATEGIES`): one file each, registered under its file stem.

To add one: create `strategies/<name>.py` with a function decorated by `@STRATEGIES.register("<name>")` that takes
(cfg, plugins=(), **template_kwargs) and returns an Avalanche template, then add its import line below. The
contract test in tests/test_strategies.py picks it up with no edit.
"""

from strategies import (  # noqa: F401  (registration)
    agem,
    der,
    ewc,
    gdumb,
    gem,
    joint,
    lwf,
    mas,
    naive,
    progressive,
    replay,
    si,
    single_task,
)
