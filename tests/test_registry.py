import pytest

from benchmark.errors import UserError
from benchmark.registry import BACKBONES, SOURCES, STRATEGIES, STREAMS, Registry


def test_duplicate_name_raises():
    reg = Registry("thing", "benchmark")
    reg.register("a")(lambda: 1)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(lambda: 2)


@pytest.mark.parametrize("reg,known", [(STREAMS, "binary_tasks"), (SOURCES, "cifar10, fashion_mnist"),
                                       (BACKBONES, ", ".join(BACKBONES.names())),
                                       (STRATEGIES, ", ".join(STRATEGIES.names()))])
def test_unknown_name_lists_known_ones(reg, known):
    with pytest.raises(UserError) as e:
        reg.get("nope")
    assert known in str(e.value) and "'nope'" in str(e.value)


def test_registry_names_match_file_stems():
    import importlib

    for name in STRATEGIES.names():
        assert importlib.import_module(f"strategies.{name}").__name__ == f"strategies.{name}"
