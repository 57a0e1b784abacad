"""Plugin state for per-experience checkpoints, with no pickle: nested containers of tensors, generators, numbers and
strings → a JSON skeleton plus a flat dict of tensors, and back (benchmark/harness/checkpoint.py writes them as
checkpoint JSON + safetensors).

The state protocol, which every plugin of a strategy follows (its own and the harness's):

    state_dict() → dict                   everything a later experience reads from the plugin
    load_state_dict(state, strategy)      puts it back into a freshly built plugin, before its next experience;
                                          `strategy`: the freshly built strategy (`strategy.model`, and
                                          `strategy.resume_stream`, the run's train stream, for a plugin that keeps
                                          past experiences' samples by their position)

`Stateful` implements both from `state_attrs`. `rebuilt_attrs` names a plugin's other attributes: set from the
config when it is built, rebound by the harness at every experience (a generator from `own_generator`), or scratch
that lives within one training step. tests/test_checkpoints.py trains every registered strategy for one experience
and requires each attribute of each plugin to be one or the other, so state added later cannot be forgotten."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import torch

SCALARS = (type(None), bool, int, float, str)


class Stateful:
    """The state protocol from attribute names (module docstring)."""

    state_attrs: tuple[str, ...] = ()
    rebuilt_attrs: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.state_attrs}

    def load_state_dict(self, state: dict, strategy=None) -> None:
        for name in self.state_attrs:
            setattr(self, name, state[name])


def has_state_protocol(plugin) -> bool:
    return callable(getattr(plugin, "state_dict", None)) and callable(getattr(plugin, "load_state_dict", None))


def pack(obj, key: str, tensors: dict[str, torch.Tensor]):
    """`obj` as JSON, its tensors (and generators' states, numpy arrays) moved into `tensors` under keys below
    `key`. Containers are tagged ({"$list": …}) so tuples, sets, non-string dict keys and defaultdicts come back as
    they were; anything else (a module, a dataset) is a TypeError naming where it sits: such state is saved by its
    owner's state_dict as tensors or positions."""
    if isinstance(obj, SCALARS):
        return obj
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"$tensor": key, "device": str(obj.device), "parameter": isinstance(obj, torch.nn.Parameter)}
    if isinstance(obj, torch.Generator):
        tensors[key] = obj.get_state()
        return {"$generator": key, "device": str(obj.device)}
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj)).clone()
        return {"$ndarray": key}
    if isinstance(obj, np.generic):
        return {"$numpy": obj.dtype.str, "value": obj.item()}
    if isinstance(obj, torch.Size):
        obj = tuple(obj)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj) if isinstance(obj, (set, frozenset)) else obj
        tag = {list: "$list", tuple: "$tuple", set: "$set", frozenset: "$frozenset"}[type(obj)]
        return {tag: [pack(v, f"{key}.{i}", tensors) for i, v in enumerate(items)]}
    if isinstance(obj, dict):
        factory = obj.default_factory.__name__ if isinstance(obj, defaultdict) else None
        if factory not in (None, "list", "dict", "int", "float", "set"):
            raise TypeError(f"{key}: a defaultdict of {factory} cannot be checkpointed")
        # a plain string key names its tensors (for messages); any other, or one with "." or "#", its position
        names = [f"{key}.{k}" if isinstance(k, str) and k and "." not in k and "#" not in k else f"{key}.#{i}"
                 for i, k in enumerate(obj)]
        return {"$dict": [[pack(k, f"{name}:key", tensors), pack(v, name, tensors)]
                          for name, (k, v) in zip(names, obj.items(), strict=True)], "default": factory}
    raise TypeError(f"{key}: a {type(obj).__name__} cannot be checkpointed (state must be tensors, generators, "
                    f"numbers, strings and containers of them)")


FACTORIES = {"list": list, "dict": dict, "int": int, "float": float, "set": set}


def unpack(skeleton, tensors: dict[str, torch.Tensor], device=None):
    """pack's inverse; tensors go back to the device they were saved from (`device`: to that one instead, for a
    run resumed on another device)."""
    if isinstance(skeleton, SCALARS):
        return skeleton
    if isinstance(skeleton, list):  # plain JSON lists only appear inside tags
        return [unpack(v, tensors, device) for v in skeleton]
    if "$tensor" in skeleton:
        t = tensors[skeleton["$tensor"]].to(device or skeleton["device"])
        return torch.nn.Parameter(t, requires_grad=t.is_floating_point()) if skeleton["parameter"] else t
    if "$generator" in skeleton:
        generator = torch.Generator(device=skeleton["device"])
        generator.set_state(tensors[skeleton["$generator"]])
        return generator
    if "$ndarray" in skeleton:
        return tensors[skeleton["$ndarray"]].numpy().copy()
    if "$numpy" in skeleton:
        return np.dtype(skeleton["$numpy"]).type(skeleton["value"])
    for tag, kind in (("$list", list), ("$tuple", tuple), ("$set", set), ("$frozenset", frozenset)):
        if tag in skeleton:
            return kind(unpack(v, tensors, device) for v in skeleton[tag])
    items = [(unpack(k, tensors, device), unpack(v, tensors, device)) for k, v in skeleton["$dict"]]
    factory = skeleton.get("default")
    return defaultdict(FACTORIES[factory], items) if factory else dict(items)


def global_rng_state() -> dict:
    """torch's, numpy's and Python's global generators (the harness reseeds torch's at every experience; these make
    a resumed run start the next experience exactly where an uninterrupted one would in any case)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": (name, keys.tolist(), pos, has_gauss, cached),
            "python": random.getstate()}


def set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
