"""The package's import structure: no import cycles, no module importing a layer above its own (the layers
are those of docs/DESIGN.md "Layers"), no module importing another package's private (`_x`) names.

Imports are read from the source (ast), at module level and inside functions alike: a lazy import still
ties the two modules together.
"""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = ("lingshu_jax", "configs", "scripts")

# Top to bottom, as in docs/DESIGN.md "Layers": a module may import its own layer and the layers below.
LAYERS = (
    (
        "entry points",
        (
            "lingshu_jax.aot",
            "lingshu_jax.bench",
            "lingshu_jax.rl",
            "lingshu_jax.cli",
            "lingshu_jax.evals.cli",
        ),
    ),
    ("training", ("lingshu_jax.train",)),
    ("the public model object", ("lingshu_jax.api",)),
    ("inference", ("lingshu_jax.infer",)),
    ("data pipeline, demo data", ("lingshu_jax.data", "lingshu_jax.demo")),
    ("checkpoints, test models", ("lingshu_jax.convert", "lingshu_jax.testing")),
    ("model, processing", ("lingshu_jax.model", "lingshu_jax.processing")),
    ("evaluation (no JAX)", ("lingshu_jax.evals",)),
    ("base", ("lingshu_jax.sharding", "lingshu_jax.logs", "lingshu_jax")),
)


def _modules(top: str) -> dict[str, str]:
    """Dotted module name -> file, for every .py under REPO/top (packages as their __init__)."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(REPO, top)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = path
    return out


MODULES = {name: path for top in OURS for name, path in _modules(top).items()}


def _resolve(name: str) -> str | None:
    """The module of ours that `import name` loads last (the longest known prefix), None if not ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, str, int]]:
    """[(imported module of ours, imported name as written, line)] of every import in `module`'s file."""
    out = []
    for node in ast.walk(ast.parse(open(MODULES[module]).read(), MODULES[module])):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _resolve(alias.name)) is not None:
                    out.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                target = full if full in MODULES else _resolve(node.module)
                if target is not None:
                    out.append((target, full, node.lineno))
    return out


GRAPH = {m: sorted({t for t, _, _ in imports(m) if t != m}) for m in MODULES}


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, its = [start], [iter(graph.get(start, ()))]
        state[start] = 1
        while path:
            nxt = next(its[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                its.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                its.append(iter(graph.get(nxt, ())))
    return None


def test_find_cycle_names_the_cycle_and_accepts_a_dag():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def layer_of(module: str) -> int:
    """Index in LAYERS (0 = top) of the longest package prefix naming `module`."""
    best, index = "", None
    for i, (_, packages) in enumerate(LAYERS):
        for p in packages:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, index = p, i
    if index is None:
        raise KeyError(f"{module}: in no layer of LAYERS (add its package to docs/DESIGN.md and this test)")
    return index


def test_layer_of_picks_the_longest_package():
    assert LAYERS[layer_of("lingshu_jax.model.vlm")][0] == "model, processing"
    assert LAYERS[layer_of("lingshu_jax.sharding")][0] == "base"
    assert (
        layer_of("lingshu_jax.bench.suite")
        < layer_of("lingshu_jax.train.step")
        < layer_of("lingshu_jax.logs")
    )


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module in sorted(m for m in MODULES if m.startswith("lingshu_jax")):
        for target, name, line in imports(module):
            if layer_of(target) < layer_of(module):
                upward.append(
                    f"{MODULES[module]}:{line}: {module} ({LAYERS[layer_of(module)][0]}) imports "
                    f"{name} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports upward:\n" + "\n".join(upward)


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "lingshu_jax" else parts[0]


def private_imports(module: str) -> list[tuple[str, int]]:
    """[(dotted name, line)]: private names (a `_x` component) of another package of ours that `module`
    imports, by `from m import _x`, `import m._x` or `m._x` on an imported module `m`."""
    tree = ast.parse(open(MODULES[module]).read(), MODULES[module])
    out, aliases = [], {}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [(a.name, a.asname or a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [(f"{node.module}.{a.name}", a.asname or a.name) for a in node.names]
        for full, bound in names:
            if _resolve(full) is None or _package(_resolve(full)) == _package(module):
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in full.split(".")):
                out.append((full, node.lineno))
            if full in MODULES:
                aliases[bound] = full
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            out.append((f"{aliases[node.value.id]}.{node.attr}", node.lineno))
    return out


def test_private_import_check_sees_from_import_and_attribute_access(tmp_path, monkeypatch):
    src = tmp_path / "probe.py"
    src.write_text("from lingshu_jax.demo import _hidden\nimport lingshu_jax.sharding as s\ns._rules()\n")
    monkeypatch.setitem(MODULES, "configs.probe", str(src))
    assert private_imports("configs.probe") == [
        ("lingshu_jax.demo._hidden", 1),
        ("lingshu_jax.sharding._rules", 3),
    ]


@pytest.mark.parametrize("top", OURS)
def test_no_module_imports_another_packages_private_names(top):
    found = {(m, name): line for m in MODULES if m.split(".")[0] == top for name, line in private_imports(m)}
    unexpected = sorted(f"{MODULES[m]}:{line}: {name}" for (m, name), line in found.items())
    assert not unexpected, "private names imported across packages:\n" + "\n".join(unexpected)
