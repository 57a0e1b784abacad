"""The layout's rules, as checks over a source tree (tests/test_structure.py runs them on this checkout and on small
synthetic trees, so each can be seen to fail):

- no import cycle between the modules of benchmark/ and strategies/ (import_cycles);
- every module directly under benchmark/ is one of the few declared top-level modules, every subpackage a declared
  layer (unowned);
- every registry entry in its own file, named for it (misplaced_entries).

The import graph is static: every `import` / `from … import` of the tree's own modules, at any depth (function-level
imports included), and `importlib.import_module` / `__import__` of a literal name, at module granularity. Importing
`a.b.c` also runs the packages `a` and `a.b` (their `__init__.py`), so the edge goes to each of them too, except to a
package that holds the importing module itself (Python has already run it by then).
"""

from __future__ import annotations

import ast
from pathlib import Path

# The top level of benchmark/, shaped like the path of one run: a command (cli) reads a config, runs the harness on
# a stream of tasks through a model, writes outputs; the grid runs many. Everything else lives in a layer.
TOP_LEVEL = {
    "__init__": "the package and its version",
    "__main__": "`python -m benchmark`: the cli",
    "cli": "the composition root: every command, and the one module that wires the core to mtl/, pretrain/, tuning/",
    "config": "RunConfig, profiles and the shared parsers: what every layer reads",
    "errors": "UserError and RunFailed, raised from every layer",
    "registry": "the registries (streams, sources, backbones, models, strategies with their composition `a+b`, task "
                "kinds) every axis registers into",
}
LAYERS = {  # subpackage of benchmark/ → what it holds
    "runtime": "the machine a run computes on: device and dtype, paired randomness, plugins' checkpoint state, "
               "library warnings",
    "data": "image sources (registry SOURCES) and the data API: load_source, materialize_images",
    "tasks": "task kinds (registry KINDS): heads' sizes, losses, metrics, distillation terms",
    "streams": "continual streams (registry STREAMS): a source's tasks as Avalanche experiences",
    "models": "backbones (registry BACKBONES) and the multi-head network",
    "harness": "the path of one run: its loop, plugins, evaluation (R), scenarios, feature cache, summary.json",
    "outputs": "what runs leave on disk: run folders and their lock, metrics of R, the report, figures, tracking",
    "grid": "many runs: the batch over a profile and its executors (local, Ray)",
    "tuning": "`hatswap tune`: hyperparameter search on a validation split, and tuned records",
    "pretrain": "`hatswap pretrain`: DINO self-supervised pretraining of a backbone",
    "mtl": "`hatswap mtl`: multi-task learning, built on the core (which never imports it)",
    "diagnostics": "checks of the harness itself: its performance tables and the GPU check",
}
# Registry entries that share a file on purpose: name → why (each still registers from one module of its own).
FAMILIES = {
    "benchmark/models/dino.py": "the four DINO ViTs (dino_vits16, dino_vitb16, dinov2_vits14, dinov2_vitb14) differ "
                                "only in their timm architecture and hub weights: one builder, registered per name",
    "benchmark/mtl/continual.py": "every multi-task architecture (each registered in its own file under "
                                  "mtl/architectures/) offered to `hatswap run --architecture`: one loop over them",
}
# Known breaks of a rule, listed so that a test passes while their fix is under way, and checked to still be there,
# so that an entry goes once the fix lands (test_structure says which to remove). None today.
PENDING_CYCLE_EDGES: dict = {}
PENDING_ENTRIES: dict = {}


def modules(root: Path, tops=("benchmark", "strategies")) -> dict[str, Path]:
    """Dotted module name → file, for every .py under root/<top> (a package under its own name)."""
    out = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _named_imports(tree: ast.AST, package: str) -> list[str]:
    """Every module name the code imports (the `from` module and each `from m import n` as m.n: n may be a module)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, up level − 1
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names += [base, *(f"{base}.{a.name}" for a in node.names)]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names.append(node.args[0].value)
    return names


def import_graph(root: Path, tops=("benchmark", "strategies")) -> dict[str, set[str]]:
    """Module → the tree's modules it imports (module granularity; packages run on the way count, see above)."""
    mods, graph = modules(root, tops), {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        own = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 2)} | {name}
        targets = set()
        for imported in _named_imports(ast.parse(path.read_text(), str(path)), package):
            parts = imported.split(".")
            targets |= {m for k in range(1, len(parts) + 1) if (m := ".".join(parts[:k])) in mods and m not in own}
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]], ignore=()) -> list[list[str]]:
    """One cycle (a → … → a) per strongly connected component of more than one module (Tarjan), edges in `ignore`
    left out."""
    graph = {a: {b for b in bs if (a, b) not in set(ignore)} for a, bs in graph.items()}
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def visit(v):  # recursion depth ≤ the number of modules (a few hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while not scc or scc[-1] != v:
                scc.append(stack.pop())
                on.discard(scc[-1])
            if len(scc) > 1:
                sccs.append(set(scc))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, scc) for scc in sccs]


def _cycle_in(graph: dict[str, set[str]], scc: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first within the component)."""
    start = min(scc)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & scc):
            if w == start:
                return [*path, start]
            if w not in seen:
                seen.add(w)
                paths.append([*path, w])
    return sorted(scc)


def unowned(root: Path, top_level=None, layers=None) -> list[str]:
    """Modules directly under root/benchmark/ that are not declared top-level ones, subpackages (folders holding
    Python files) that are no declared layer, and declarations that name nothing any more."""
    top_level, layers = TOP_LEVEL if top_level is None else top_level, LAYERS if layers is None else layers
    pkg = root / "benchmark"
    files = {p.stem for p in pkg.glob("*.py")}
    folders = {p.name for p in pkg.iterdir() if p.is_dir() and any(p.rglob("*.py"))}
    return ([f"benchmark/{m}.py: no layer owns it (move it into one of {', '.join(sorted(layers))}, or declare it "
             f"in TOP_LEVEL with its reason)" for m in sorted(files - set(top_level))]
            + [f"benchmark/{d}/: a subpackage that is no declared layer (add it to LAYERS with its role)"
               for d in sorted(folders - set(layers))]
            + [f"{what} {name!r} is declared but absent: drop it" for what, names, present in
               (("TOP_LEVEL", top_level, files), ("LAYERS", layers, folders)) for name in sorted(set(names) - present)])


def registrations(path: Path) -> list[ast.Call]:
    """The `X.register(…)` and `X.register_plugins(…)` calls of a module (X a registry constant: an upper-case
    name), decorators or not."""
    return [node for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr in ("register", "register_plugins")
            and isinstance(node.func.value, ast.Name) and node.func.value.id.isupper()]


def misplaced_entries(root: Path, tops=("benchmark", "strategies"), allowed=None) -> list[str]:
    """Registry entries not in a file of their own: a module registering more than one entry, or one whose name is
    computed (a loop or a helper), or named otherwise than the file (its stem; '-' in a name stands for '_'). Files
    in `allowed` (FAMILIES and PENDING_ENTRIES by default) are let through."""
    allowed = {**FAMILIES, **PENDING_ENTRIES} if allowed is None else allowed
    problems = []
    for path in modules(root, tops).values():
        rel, calls = path.relative_to(root).as_posix(), registrations(path)
        if rel in allowed or not calls:
            continue
        names = [c.args[0].value if c.args and isinstance(c.args[0], ast.Constant) else None for c in calls]
        if len(calls) > 1:
            problems.append(f"{rel} registers {len(calls)} entries; give each a file of its own")
        elif names[0] is None:
            problems.append(f"{rel}:{calls[0].lineno} registers a computed name (a loop or a helper); give each "
                            f"entry a file of its own, or declare the family in tests/layout_rules.py FAMILIES")
        elif names[0].replace("-", "_") != path.stem:
            problems.append(f"{rel} registers {names[0]!r}: an entry lives in the file named for it")
    return problems
