"""optix's modules form layers: no import cycles, no upward imports, no reaching into private names.

Every module under ``optix/`` is parsed with :mod:`ast` (nothing is imported, so this needs
neither jax nor optix to load). Every import counts wherever it is written: at module level,
inside a function, or under ``if TYPE_CHECKING:``; ``import optix.x``, ``from optix.x import y``
and the relative ``from . import y`` forms are all read. From them the test builds the graph of
which module imports which, and fails

- on an import cycle, naming the modules around it (an import moved into a function hides a cycle
  from Python, not from this test: move the shared code to the lower module instead);
- on an import from a lower layer into a higher one;
- on a use of another module's private name: ``from optix.x import _name`` or ``x._name``
  (a name another module needs is public within the package: no leading underscore).

The layers, lowest first. A module may import any module of a lower layer and, without a cycle,
of its own layer:

1. **foundation**: ``optix._base`` (the transform type and type aliases), ``optix._keypath``
   (a key path as text), ``optix._pack`` (packed buffers), ``optix._paths`` (path patterns and
   specs), ``optix._validate`` (argument and tree checks), ``optix._tree`` (the tree math every
   transform uses);
2. **core**: every other ``optix/_*.py`` (hyperparameters, chain, apply_updates, state and
   checkpoint tools, ...) and ``optix.toolkit`` (what every transform is written with);
3. **schedules**: ``optix.schedules``;
4. **transforms**: ``optix.transforms``, the building blocks (scaling, clipping, regularizers,
   line searches, and the ``scale_by_*`` of the algorithms not yet moved to ``optimizers``);
5. **wrappers**: ``optix.wrappers`` (transforms of transforms: masked, partition, ...);
6. **optimizers**: ``optix.optimizers``, the algorithms (some are built with ``masked`` or
   ``partition``, so they sit above the wrappers);
7. **sharding**: ``optix.sharding``;
8. **public**: ``optix`` itself, the ``__init__`` that re-exports the public surface;
9. **compare**: ``optix.compare``, the benchmark tool, written against the public surface.
"""

from __future__ import annotations

import ast
import functools
import pathlib
from dataclasses import dataclass
from dataclasses import field

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

FOUNDATION = (
    "optix._base",
    "optix._keypath",
    "optix._pack",
    "optix._paths",
    "optix._validate",
    "optix._tree",
)
LAYERS = (
    "foundation",
    "core",
    "schedules",
    "transforms",
    "wrappers",
    "optimizers",
    "sharding",
    "public",
    "compare",
)


# Core modules with a public name: what a user writes a transform of their own with.
CORE_PUBLIC = {"optix.toolkit"}


def layer(module: str) -> str | None:
    """The layer of a module (dotted name), or None when no layer takes it."""
    parts = module.split(".")
    if parts[0] != "optix":
        return None
    if len(parts) == 1:
        return "public"
    if parts[1] in LAYERS:
        return parts[1]
    if module in FOUNDATION:
        return "foundation"
    if module in CORE_PUBLIC or (len(parts) == 2 and parts[1].startswith("_")):
        return "core"
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@dataclass
class Graph:
    """Modules by dotted name (with their files), import edges and private-name uses."""

    files: dict[str, pathlib.Path]
    edges: dict[str, dict[str, str]] = field(default_factory=dict)  # importer -> {target: where}
    private: list[str] = field(default_factory=list)  # "where: what"


def modules(root: pathlib.Path, package: str = "optix") -> dict[str, tuple[pathlib.Path, bool]]:
    """Every module of ``package`` under ``root``: dotted name -> (file, is a package)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` reads from, with a relative import resolved."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def build(root: pathlib.Path, package: str = "optix") -> Graph:
    """Parse every module of ``package`` and collect its imports of ``package``'s modules."""
    mods = modules(root, package)
    graph = Graph({m: p for m, (p, _) in mods.items()})
    for module, (path, is_package) in mods.items():
        _read(graph, mods, module, is_package, path.relative_to(root).as_posix(), package)
    graph.private = sorted(set(graph.private))
    return graph


def _read(
    graph: Graph, mods: dict, module: str, is_package: bool, where: str, package: str
) -> None:
    """Add the imports and private-name uses of one module to ``graph``."""
    edges = graph.edges.setdefault(module, {})
    tree = ast.parse(graph.files[module].read_text(encoding="utf-8"), filename=where)
    aliases: dict[str, str] = {}  # a local name bound to a module of the package

    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    def add(target: str, line: int) -> None:
        if target in mods and target != module:
            edges.setdefault(target, f"{where}:{line}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if inside(a.name):
                    add(a.name, node.lineno)
                    top = a.name.split(".")[0]
                    aliases[a.asname or top] = a.name if a.asname else top
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            if not inside(source):
                continue
            for a in node.names:
                sub = f"{source}.{a.name}"
                if sub in mods:  # a module: `from optix import _tree`, `from . import x`
                    add(sub, node.lineno)
                    aliases[a.asname or a.name] = sub
                    continue
                add(source, node.lineno)
                if _private(a.name) and source != module:
                    graph.private.append(f"{where}:{node.lineno}: from {source} import {a.name}")

    # `alias._name` (or `optix.x._name`): follow the attributes while they name modules; the first
    # one that does not is a name in that module, private when it starts with "_".
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if not isinstance(base, ast.Name) or base.id not in aliases:
            continue
        target = aliases[base.id]
        for attr in reversed(chain):
            if f"{target}.{attr}" in mods:
                target = f"{target}.{attr}"
                continue
            if _private(attr) and target != module:
                graph.private.append(f"{where}:{node.lineno}: uses {target}.{attr}")
            break


def knots(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """The groups of two or more modules that all reach each other by imports (strongly connected
    components, by Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(out)


def shortest_cycle(edges: dict[str, dict[str, str]], group: list[str]) -> list[str]:
    """The shortest cycle ``[a, b, ..., a]`` from the first module of ``group`` within it."""
    members, start = set(group), group[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while start not in previous:  # breadth first
        reached = []
        for v in frontier:
            for w in sorted(edges.get(v, {})):
                if w in members and w not in previous:
                    previous[w] = v
                    reached.append(w)
        frontier = reached
    path = [start]
    while len(path) == 1 or path[-1] != start:
        path.append(previous[path[-1]])
    return path[::-1]


def cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle through each knot."""
    return [shortest_cycle(edges, group) for group in knots(edges)]


def cycle_problems(graph: Graph) -> list[str]:
    out = []
    for group in knots(graph.edges):
        cycle = shortest_cycle(graph.edges, group)
        hops = [f"{a} -> {b} ({graph.edges[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
        text = "import cycle: " + " -> ".join(cycle) + "\n    " + "\n    ".join(hops)
        if len(group) > len(cycle) - 1:
            text += "\n    (modules in this knot: " + ", ".join(group) + ")"
        out.append(text)
    return out


def layer_problems(graph: Graph) -> list[str]:
    out = []
    for module in sorted(graph.edges):
        mine = layer(module)
        if mine is None:
            out.append(f"{module} is in no layer: add it to the layers of tests/test_imports.py")
            continue
        for target, where in sorted(graph.edges[module].items()):
            theirs = layer(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                out.append(
                    f"{where}: {module} ({mine}) imports {target} ({theirs}), a higher layer"
                )
    return out


@functools.cache
def optix_graph() -> Graph:
    return build(ROOT)


def test_optix_has_no_import_cycles():
    problems = cycle_problems(optix_graph())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_lower_layers_never_import_higher_ones():
    problems = layer_problems(optix_graph())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_no_module_uses_another_modules_private_names():
    problems = optix_graph().private
    if problems:
        pytest.fail("private names of other modules:\n" + "\n".join(problems), pytrace=False)


def test_the_graph_is_read_in_full():
    # A parser that missed imports would pass the tests above without looking.
    graph = optix_graph()
    assert len(graph.files) > 100
    assert "optix._base" in graph.edges["optix._chain"]  # from optix._base import ...
    assert "optix._tree" in graph.edges["optix._apply"]  # from optix import _tree
    assert "optix.schedules._basic" in graph.edges["optix.schedules"]  # from ... import, __init__
    assert "optix" in graph.edges["optix.compare._spec"]  # import optix
    assert all(layer(m) is not None for m in graph.files)


def _package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in {"optix/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_hidden_in_a_function_is_found_and_named(tmp_path):
    root = _package(
        tmp_path,
        {
            "optix/_a.py": "from optix._b import f\n",
            "optix/_b.py": "def f():\n    from optix import _c\n",
            "optix/_c.py": "from . import _a\n",
            "optix/_d.py": "import optix._a\n",
        },
    )
    (problem,) = cycle_problems(build(root))
    assert problem.startswith("import cycle: optix._a -> optix._b -> optix._c -> optix._a\n")
    assert "optix/_b.py:2" in problem


def test_a_cycle_through_type_checking_imports_and_packages_is_found(tmp_path):
    root = _package(
        tmp_path,
        {
            "optix/compare/__init__.py": "from optix.compare._x import X\n",
            "optix/compare/_x.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from optix.compare import _y\n",
            "optix/compare/_y.py": "from .. import compare\n",
        },
    )
    assert cycles(build(root).edges) == [
        ["optix.compare", "optix.compare._x", "optix.compare._y", "optix.compare"]
    ]


def test_an_upward_import_is_found(tmp_path):
    root = _package(
        tmp_path,
        {
            "optix/_tree.py": "from optix._hyperparams import hyperparam_dtype\n",
            "optix/_hyperparams.py": "",
            "optix/transforms/__init__.py": "",
            "optix/transforms/_x.py": "def f():\n    import optix.wrappers._y as y\n",
            "optix/wrappers/__init__.py": "",
            "optix/wrappers/_y.py": "",
        },
    )
    graph = build(root)
    assert not cycle_problems(graph)
    assert layer_problems(graph) == [
        "optix/_tree.py:1: optix._tree (foundation) imports optix._hyperparams (core), "
        "a higher layer",
        "optix/transforms/_x.py:2: optix.transforms._x (transforms) imports optix.wrappers._y "
        "(wrappers), a higher layer",
    ]


def test_private_names_of_other_modules_are_found(tmp_path):
    root = _package(
        tmp_path,
        {
            "optix/_a.py": "def _own():\n    pass\n_own()\n",
            "optix/schedules/__init__.py": "",
            "optix/schedules/_b.py": "from ._c import _anneal, public\n",
            "optix/schedules/_c.py": "from optix import _a\n_a._own()\n",
            "optix/schedules/_d.py": "import optix.schedules._c as c\nc._hidden\nc.public\n",
            "optix/schedules/_e.py": "import optix\noptix._a._own\noptix.__name__\n",
        },
    )
    assert build(root).private == [
        "optix/schedules/_b.py:1: from optix.schedules._c import _anneal",
        "optix/schedules/_c.py:2: uses optix._a._own",
        "optix/schedules/_d.py:2: uses optix.schedules._c._hidden",
        "optix/schedules/_e.py:2: uses optix._a._own",
    ]
