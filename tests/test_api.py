"""The public API is typed, documented with runnable examples, and versioned from one place.

Checked over every name in ``optix.__all__`` and ``optix.schedules.__all__``:

- every public function annotates every parameter and its return, and the annotations resolve;
  transform factories return ``GradientTransformation`` and schedule factories ``Schedule``;
- every function has a docstring with an ``Example:`` section holding at least one ``>>>`` line
  (the suite runs those examples as doctests, so "runnable" is checked there);
- every class has its own docstring (a NamedTuple's generated ``Name(field, ...)`` does not count);
- type aliases (``Params = Any``, ``Schedule = Callable[...]``) are objects that cannot hold a
  docstring of their own, so they are checked in the source instead: the assignment that defines
  one must be followed by a string literal, the attribute-docstring convention Sphinx reads;
- ``optix.__version__`` equals the installed distribution's version.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.metadata
import inspect
import pathlib
import re
import tomllib
import types
import typing

import optix
import optix.schedules

ROOT = pathlib.Path(__file__).resolve().parents[1]

NAMESPACES = (optix, optix.schedules, optix.sharding)
# Public helpers in the transform modules that are not factories of a GradientTransformation.
NOT_FACTORIES = {
    "optix.accumulate_has_updated",
    "optix.averaged_params",
    "optix.noise_key",
    "optix.metrics",
    "optix.schedule_free_eval_params",
    "optix.value_and_grad_from_state",
}
EXAMPLE_SECTION = re.compile(r"^[ \t]*Examples?:[ \t]*\n((?:[ \t]*\n|[ \t]+.*\n?)*)", re.MULTILINE)


def _public() -> list[tuple[str, object, types.ModuleType]]:
    return [
        (f"{ns.__name__}.{name}", getattr(ns, name), ns) for ns in NAMESPACES for name in ns.__all__
    ]


def _functions() -> list[tuple[str, types.FunctionType]]:
    return [(q, obj) for q, obj, _ in _public() if inspect.isfunction(obj)]


def _is_alias(obj: object) -> bool:
    """A type alias: ``Any``, a union, or a parametrised generic, not a class of its own."""
    return obj is typing.Any or isinstance(
        obj,
        types.UnionType | types.GenericAlias | typing._GenericAlias,  # type: ignore[attr-defined]
    )


def _defining_module(ns: types.ModuleType, name: str) -> str:
    """The module that ``ns/__init__.py`` imports ``name`` from."""
    tree = ast.parse(pathlib.Path(ns.__file__).read_text())  # type: ignore[arg-type]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if any((a.asname or a.name) == name for a in node.names):
                return node.module
    return ns.__name__


def _has_attribute_docstring(module: str, name: str) -> bool:
    """Whether the top-level assignment to ``name`` in ``module`` is followed by a string."""
    source = pathlib.Path(importlib.import_module(module).__file__).read_text()  # type: ignore[arg-type]
    body = ast.parse(source).body
    for node, after in zip(body, body[1:], strict=False):
        targets = [node.target] if isinstance(node, ast.AnnAssign) else []
        targets = node.targets if isinstance(node, ast.Assign) else targets
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
                and bool(after.value.value.strip())
            )
    return False


def test_public_functions_are_fully_annotated():
    missing = []
    for qualname, fn in _functions():
        sig = inspect.signature(fn)
        bare = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
        if sig.return_annotation is inspect.Signature.empty:
            bare.append("return")
        if bare:
            missing.append(f"{qualname}: {', '.join(bare)}")
    assert not missing, "public functions with missing type hints:\n" + "\n".join(missing)


def test_annotations_resolve_and_factories_return_their_type():
    wrong = []
    for qualname, fn in _functions():
        try:
            hints = typing.get_type_hints(fn)
        except Exception as e:  # an annotation that names something undefined at runtime
            wrong.append(f"{qualname}: annotations do not resolve ({e!r})")
            continue
        module = fn.__module__
        if qualname in NOT_FACTORIES:
            continue
        if module.startswith(("optix.optimizers.", "optix.transforms.", "optix.wrappers.")):
            expected: object = optix.GradientTransformation
        elif module.startswith("optix.schedules."):
            expected = optix.Schedule
        else:
            continue
        if hints.get("return") != expected:
            wrong.append(f"{qualname}: returns {hints.get('return')}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_hyperparameters_accept_arrays():
    """A parameter annotated with a float scalar also accepts a ``jax.Array``."""
    narrow = []
    for qualname, fn in _functions():
        for name, hint in typing.get_type_hints(fn).items():
            if name != "return" and hint is float:
                narrow.append(f"{qualname}({name}: float)")
    assert not narrow, "hyperparameters typed `float`; use ArrayLike or ScalarOrSchedule:\n" + (
        "\n".join(narrow)
    )


def test_every_public_name_is_documented():
    undocumented = []
    for qualname, obj, ns in _public():
        name = qualname.rsplit(".", 1)[1]
        if _is_alias(obj):
            if not _has_attribute_docstring(_defining_module(ns, name), name):
                undocumented.append(f"{qualname} (type alias: no string literal after it)")
        elif isinstance(obj, types.ModuleType):
            if not (obj.__doc__ or "").strip():
                undocumented.append(f"{qualname} (module)")
        elif inspect.isclass(obj):
            doc = obj.__dict__.get("__doc__") or ""
            generated = hasattr(obj, "_fields") and re.fullmatch(rf"{name}\(.*\)", doc)
            if generated or not doc.strip():
                undocumented.append(f"{qualname} (class)")
        elif inspect.isfunction(obj):
            if not (obj.__doc__ or "").strip():
                undocumented.append(f"{qualname} (function)")
        else:
            undocumented.append(f"{qualname} (unexpected kind of object: {type(obj).__name__})")
    assert not undocumented, "public names without a docstring:\n" + "\n".join(undocumented)


def test_every_public_function_has_an_example():
    missing = []
    for qualname, fn in _functions():
        doc = inspect.getdoc(fn) or ""
        section = EXAMPLE_SECTION.search(doc + "\n")
        examples = doctest.DocTestParser().get_examples(section.group(1)) if section else []
        if not examples:
            missing.append(qualname)
    assert not missing, "public functions without an `Example:` section with `>>>` lines:\n" + (
        "\n".join(missing)
    )


def test_version_matches_distribution_metadata():
    assert optix.__version__ == importlib.metadata.version("optix")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert optix.__version__ == pyproject["project"]["version"]


def test_all_lists_existing_unique_names():
    for ns in NAMESPACES:
        assert len(ns.__all__) == len(set(ns.__all__)), ns.__name__
        absent = [n for n in ns.__all__ if not hasattr(ns, n)]
        assert not absent, f"{ns.__name__}.__all__ names missing attributes: {absent}"
