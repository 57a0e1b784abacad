"""The misspelt-hook guard (benchmark/harness/plugin_check.py): a callable named like an Avalanche hook that is none is
one error line naming it, its plugin and the real hook, on the class and on the instance; real hooks and declared
helpers pass."""

from __future__ import annotations

import types

import pytest
from avalanche.core import SupervisedPlugin

from benchmark.errors import UserError
from benchmark.harness.plugin_check import check_plugin_hooks, not_a_hook

NEAR_MISSES = [  # (name, the hook it is taken for)
    ("befor_backward", "before_backward"),
    ("beforebackward", "before_backward"),
    ("on_before_backward", "before_backward"),
    ("After_training_exp", "after_training_exp"),
    ("_before_backward", "before_backward"),
    ("before_backwards", "before_backward"),
]


def _method(strategy, **kwargs):
    strategy.loss = strategy.loss * 0


def _check(plugin):
    check_plugin_hooks(types.SimpleNamespace(plugins=[plugin]))


def _plugin_class(name: str, fn=_method) -> type:
    return type("NearMissPlugin", (SupervisedPlugin,), {name: fn})


@pytest.mark.parametrize("name,hook", NEAR_MISSES)
def test_a_near_miss_on_the_class_names_the_method_the_plugin_and_the_hook(name, hook):
    with pytest.raises(UserError) as e:
        _check(_plugin_class(name)())
    message = str(e.value)
    assert f"NearMissPlugin defines {name!r} (did you mean {hook!r}?)" in message and "\n" not in message


@pytest.mark.parametrize("name,hook", NEAR_MISSES)
def test_a_near_miss_set_on_the_instance_is_an_error_too(name, hook):
    plugin = SupervisedPlugin()
    setattr(plugin, name, _method)
    with pytest.raises(UserError) as e:
        _check(plugin)
    assert f"SupervisedPlugin defines {name!r} (set on the instance) (did you mean {hook!r}?)" in str(e.value)


def test_a_helper_far_from_every_hook_is_allowed():
    _check(_plugin_class("before_update_helper")())


def test_on_the_instance_real_hooks_far_helpers_and_values_are_fine_and_a_near_miss_is_not():
    plugin = SupervisedPlugin()
    plugin.before_backward = _method  # Avalanche calls it: getattr(plugin, "before_backward")
    plugin.before_update_helper = _method
    plugin.before_backwards = 3  # not callable: not a method
    _check(plugin)
    plugin.after_trainig_exp = _method
    with pytest.raises(UserError, match=r"'after_trainig_exp' \(set on the instance\) \(did you mean "
                                        r"'after_training_exp'\?\)"):
        _check(plugin)


@pytest.mark.parametrize("where", ["class", "instance"])
def test_a_near_miss_is_allowed_once_declared_a_helper(where):
    def plugin_with(helper):
        plugin = _plugin_class("_before_backward", helper)() if where == "class" else SupervisedPlugin()
        if where == "instance":
            plugin._before_backward = helper
        return plugin

    with pytest.raises(UserError, match="_before_backward"):
        _check(plugin_with(lambda strategy: None))
    _check(plugin_with(not_a_hook(lambda strategy: None)))

