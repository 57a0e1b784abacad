"""A plugin hook with a misspelt name is never called: Avalanche only warns about it (and the harness silences
library warnings), so a strategy would run as if the plugin did nothing. `check_plugin_hooks` makes it an error
when the strategy is built, naming the method, the plugin and the closest real hook.

A method looks like a hook when its normalised name (lower case, leading underscores and a leading `on_` dropped,
then every underscore) equals a hook's normalised name or is within edit distance MAX_EDITS of one:
`befor_backward`, `beforebackward`, `on_before_backward`, `After_training_exp` and `_before_backward` all do;
`before_update_helper` (6 edits from `beforeupdate`) does not. Two distinct hooks are at least 3 edits apart once
normalised (`aftereval` / `afterevalexp`), so 2 edits is a typo of one hook, never a name between two. Both the
plugin's class and its instance (`vars(plugin)`: Avalanche calls a hook set there too) are checked; a real hook
name is always fine.

A helper whose name is deliberately that close to a hook is declared with the `@not_a_hook` decorator:

    @not_a_hook
    def _before_backward(self, strategy): ...   # called by before_backward, never by Avalanche
"""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from benchmark.errors import UserError

HOOKS = frozenset(n for n in dir(SupervisedPlugin) if n.startswith(("before_", "after_")))
MAX_EDITS = 2  # see the module docstring: below the 3 edits between any two hooks


def not_a_hook(fn):
    """Declare `fn`, a plugin method named like a hook, a helper that Avalanche is not meant to call."""
    fn.not_a_hook = True
    return fn


def normalised(name: str) -> str:
    """`_On_Before_Backward` → `beforebackward`: what a name means, without its spelling's case and separators."""
    name = name.lower().lstrip("_")
    return name.removeprefix("on_").replace("_", "")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and substitutions from a to b."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


_NORMALISED_HOOKS = {normalised(h): h for h in HOOKS}


def closest_hook(name: str) -> tuple[str, int]:
    """(the hook whose normalised name is nearest `name`'s, its edit distance); ties go to the first in order."""
    key = normalised(name)
    return min(((hook, edit_distance(key, norm)) for norm, hook in sorted(_NORMALISED_HOOKS.items())),
               key=lambda pair: pair[1])


def misspelt_hooks(plugin) -> list[tuple[str, str, str]]:
    """(name, where, closest hook) for each callable of `plugin` named like a hook that is none: where is 'class'
    (defined on its class or a base) or 'instance' (set on the object itself)."""
    found = []
    instance_attrs = getattr(plugin, "__dict__", {})
    candidates = [(n, "class", getattr(type(plugin), n, None)) for n in dir(type(plugin))]
    candidates += [(n, "instance", v) for n, v in instance_attrs.items() if isinstance(n, str)]
    for name, where, value in candidates:
        if name in HOOKS or (name.startswith("__") and name.endswith("__")) or not callable(value) \
                or getattr(value, "not_a_hook", False):
            continue
        hook, distance = closest_hook(name)
        if distance <= MAX_EDITS:
            found.append((name, where, hook))
    return sorted(set(found))


def check_plugin_hooks(strategy) -> None:
    """Raise UserError (one line) for the first plugin of `strategy` with a callable named like a hook that is
    none."""
    for plugin in strategy.plugins:
        if bad := misspelt_hooks(plugin):
            hints = [f"{name!r}{' (set on the instance)' if where == 'instance' else ''} (did you mean {hook!r}?)"
                     for name, where, hook in bad]
            raise UserError(f"plugin {type(plugin).__name__} defines {', '.join(hints)}, which Avalanche never "
                            f"calls; rename it to a hook of avalanche.core.SupervisedPlugin, or mark a helper "
                            f"@not_a_hook (benchmark/harness/plugin_check.py)")
