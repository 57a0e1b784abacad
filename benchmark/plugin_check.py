"""A plugin hook with a misspelt name is never called: Avalanche only warns about it (and the harness silences
library warnings), so a strategy would run as if the plugin did nothing. `check_plugin_hooks` makes it an error
when the strategy is built, naming the hook and the closest real one."""

from __future__ import annotations

import difflib

from avalanche.core import SupervisedPlugin

from benchmark.errors import UserError

HOOKS = frozenset(n for n in dir(SupervisedPlugin) if n.startswith(("before_", "after_")))


def misspelt_hooks(plugin) -> list[str]:
    """Methods of `plugin` named like a hook (before_… / after_…) that are not one."""
    return sorted(n for n in dir(type(plugin)) if n.startswith(("before_", "after_")) and n not in HOOKS
                  and callable(getattr(type(plugin), n)))


def check_plugin_hooks(strategy) -> None:
    """Raise UserError for the first plugin of `strategy` with a method named like a hook that is none."""
    for plugin in strategy.plugins:
        if bad := misspelt_hooks(plugin):
            hints = [f"{name!r} (did you mean {', '.join(map(repr, difflib.get_close_matches(name, HOOKS, n=1)))}?)"
                     if difflib.get_close_matches(name, HOOKS, n=1) else repr(name) for name in bad]
            raise UserError(f"plugin {type(plugin).__name__} defines {', '.join(hints)}, which Avalanche never "
                            f"calls; rename it to a hook of avalanche.core.SupervisedPlugin")
