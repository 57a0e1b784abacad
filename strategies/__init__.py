"""Strategies (registry `STRATEGIES`): one file each, registered under its file stem.

To add one: create `strategies/<name>.py` and add its import line below. A strategy that is Avalanche's
SupervisedTemplate plus plugins decorates the function returning its plugins, (cfg, template_kwargs) → [plugin, ...],
with `@STRATEGIES.register_plugins("<name>", config_cls=...)`: its builder is generated and it combines with the
others by '+'. Any other decorates its builder, (cfg, plugins=(), **template_kwargs) → an Avalanche template, with
`@STRATEGIES.register("<name>")`. The contract test in tests/test_strategies.py picks it up with no edit; its golden
files (tests/golden/binary_tasks-<name>.txt, dense_suite-<name>.txt) are written by
`HATSWAP_WRITE_GOLDEN=1 ./run_tests.sh tests/test_strategies.py -k <name>`.
"""

from strategies import (  # noqa: F401  (registration)
    agem,
    coda_prompt,
    der,
    dualprompt,
    ewc,
    gdumb,
    gem,
    joint,
    l2p,
    lwf,
    mas,
    naive,
    progressive,
    ranpac,
    replay,
    si,
    simplecil,
    single_task,
    slca,
)
