"""The API reference's groups, derived from the code.

Every public name of ``optix`` (``optix.__all__``) is put in exactly one group by the rules in
:func:`classify`, from where it is defined and what its signature looks like, so a new public name
appears in the docs without editing them. A name that no rule places raises
:class:`UnclassifiedNameError`, which fails the docs build (``docs/conf.py`` calls
:func:`groups`) and ``tests/test_docs.py``: add a rule here rather than leaving it out.
``optix.schedules``, ``optix.sharding``, ``optix.toolkit`` and ``optix.compare`` list their
``__all__`` (less the names ``optix`` itself documents).

Imports only optix and the standard library, so the test runs without sphinx.
"""

from __future__ import annotations

import importlib
import inspect
import types
from dataclasses import dataclass


class UnclassifiedNameError(LookupError):
    """A public name that no rule of :func:`classify` places in a group."""


@dataclass(frozen=True)
class Group:
    key: str  # the page's file name, docs/api/<key>.rst
    title: str
    module: str  # the module the names are read from (``currentmodule``)
    intro: str


GROUPS: tuple[Group, ...] = (
    Group(
        "core",
        "Core: transforms, chains and updates",
        "optix",
        "The ``GradientTransformation`` protocol, the combinators that build optimizers from "
        "transforms, and the functions that apply updates to params.",
    ),
    Group(
        "optimizers",
        "Optimizers",
        "optix",
        "Complete optimizers: each takes a learning rate and returns a "
        "``GradientTransformation`` whose updates ``apply_updates`` adds to the params. "
        "See :doc:`/optimizers` for the papers and the references each is checked against.",
    ),
    Group(
        "transforms",
        "Scaling transforms",
        "optix",
        "The building blocks of the optimizers: ``scale_by_*`` transforms turn a gradient into a "
        "direction, and ``scale_lr`` turns a direction into a step (see :doc:`/index`, sign "
        "convention).",
    ),
    Group(
        "other_transforms",
        "Clipping, regularisation and other transforms",
        "optix",
        "Transforms that clip, regularise, average or normalise updates, and the helpers of the "
        "line searches and of stochastic transforms.",
    ),
    Group(
        "wrappers",
        "Wrappers",
        "optix",
        "Transforms that take another transform: per-layer optimizers, masks, gradient "
        "accumulation, skipping non-finite steps, parameter averaging, lookahead, SAM, "
        "hypergradient descent. "
        "See :doc:`/wrappers`.",
    ),
    Group(
        "state",
        "State and hyperparameters",
        "optix",
        "Reading and changing hyperparameters between steps, addressing fields of a nested "
        "state, and checking a restored checkpoint. See :doc:`/hyperparameters`.",
    ),
    Group(
        "packing",
        "Packing, fusing and quantization",
        "optix",
        "Params as one flat buffer per dtype, fused steps over many small leaves, and block-wise "
        "quantized optimizer state. See :doc:`/performance`.",
    ),
    Group(
        "state_types",
        "State and auxiliary types",
        "optix",
        "The state ``NamedTuple`` of each transform and wrapper, and the small configuration "
        "and info types some of them use.",
    ),
    Group(
        "schedules",
        "Schedules (optix.schedules)",
        "optix.schedules",
        "Functions from the step count to a value, accepted wherever a hyperparameter is.",
    ),
    Group(
        "sharding",
        "Sharding (optix.sharding)",
        "optix.sharding",
        "Shardings of the optimizer state, ZeRO-1 partitioning, and the matrix optimizers' work "
        "split over devices. See :doc:`/multi_device`.",
    ),
    Group(
        "toolkit",
        "Writing a transform (optix.toolkit)",
        "optix.toolkit",
        "What every optix transform is written with, for transforms of your own: ranges declared "
        "in the signature and enforced at construction and by ``set_hyperparams``, "
        "hyperparameters by name with one step counter, casting in one place, and ``per_leaf`` "
        "for element-wise algorithms.",
    ),
    Group(
        "compare",
        "Benchmark (optix.compare)",
        "optix.compare",
        "The optimizer benchmark behind ``python -m optix.compare``. See :doc:`/compare`.",
    ),
)

# Submodules of optix that have a group of their own (their names in optix.__all__ map there).
_SUBMODULE_GROUPS = {"schedules": "schedules", "sharding": "sharding", "toolkit": "toolkit"}
_CORE_MODULES = {"optix._base", "optix._chain", "optix._apply", "typing", "collections.abc"}
_STATE_MODULES = {"optix._hyperparams", "optix._state", "optix._checkpoint"}
_PACKING_MODULES = {"optix._pack", "optix.wrappers._fuse", "optix.wrappers._quantize"}
_WRAPPER_MODULES = ("optix.wrappers.", "optix._periodic")
_TRANSFORM_MODULES = ("optix.transforms.", "optix._per_example_clip")
# A function whose first parameter is one of these takes another transform: a wrapper.
_INNER_PARAMS = {"inner", "base", "base_optimizer", "optimizer", "fast", "tx"}
_LR_PARAMS = {"learning_rate", "max_learning_rate"}


def _parameters(obj: object) -> list[str]:
    try:
        return list(inspect.signature(obj).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []


def classify(name: str, obj: object) -> str:
    """The key of the group of ``optix.<name>``; :class:`UnclassifiedNameError` if none fits."""
    if isinstance(obj, types.ModuleType):
        if name in _SUBMODULE_GROUPS:
            return _SUBMODULE_GROUPS[name]
        raise UnclassifiedNameError(f"optix.{name} is a submodule with no group of its own")
    module = getattr(obj, "__module__", None) or ""
    if module in _CORE_MODULES:
        return "core"
    if module in _STATE_MODULES:
        return "state"
    if module in _PACKING_MODULES:
        return "packing"
    if isinstance(obj, type):
        return "state_types"
    if not callable(obj):
        raise UnclassifiedNameError(f"optix.{name} ({module}) is neither a class nor a function")
    params = _parameters(obj)
    if module.startswith(_WRAPPER_MODULES) or (params and params[0] in _INNER_PARAMS):
        return "wrappers"
    if module.startswith("optix.optimizers."):
        return "optimizers"
    if module.startswith(_TRANSFORM_MODULES):
        if name.startswith("scale"):
            return "transforms"
        if _LR_PARAMS & set(params):
            return "optimizers"
        return "other_transforms"
    raise UnclassifiedNameError(
        f"optix.{name} (defined in {module!r}) fits no API group: add a rule to docs/_api_groups.py"
    )


def groups() -> dict[str, list[str]]:
    """Each group's key and its names, sorted; every public name in exactly one group."""
    result: dict[str, list[str]] = {g.key: [] for g in GROUPS}
    optix = importlib.import_module("optix")
    for name in optix.__all__:
        key = classify(name, getattr(optix, name))
        if key in _SUBMODULE_GROUPS.values():
            continue  # the submodule's own names fill its group below
        result[key].append(name)
    for group in GROUPS:
        if group.module != "optix":  # less what optix itself documents (HyperparamState)
            names = importlib.import_module(group.module).__all__
            result[group.key] = [n for n in names if n not in optix.__all__]
    return {key: sorted(names, key=str.lower) for key, names in result.items()}


def directive(obj: object, name: str) -> str:
    """The autodoc directive that documents ``obj`` under ``name`` on a group's page."""
    if inspect.isroutine(obj):
        return f".. autofunction:: {name}"
    if isinstance(obj, type) and (getattr(obj, "__module__", "") or "").startswith("optix"):
        # A state NamedTuple lists its fields; the tuple methods are noise.
        return f".. autoclass:: {name}\n   :members:\n   :exclude-members: count, index"
    return f".. autodata:: {name}"  # constants and type aliases (``Params``: ``typing.Any``)


def write_pages(directory: str) -> list[str]:
    """Write ``index.rst`` and one page per group into ``directory``; return the files written.

    Each group is one page: a summary table, then every name documented in full. (A page per
    name, autosummary's ``:toctree:``, makes the navigation tree of every page list some 300
    entries, which tripled the build's time.)

    A file whose content is unchanged is left alone, so sphinx does not rebuild it.
    """
    import pathlib

    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = groups()
    pages = {
        "index.rst": "\n".join(
            [
                "API reference",
                "=============",
                "",
                "Generated from the code: every public name of ``optix``, ``optix.schedules``, "
                "``optix.sharding``, ``optix.toolkit`` and ``optix.compare``, in one group each "
                "(``docs/_api_groups.py``).",
                "",
                ".. toctree::",
                "   :maxdepth: 1",
                "",
                *(f"   {g.key}" for g in GROUPS),
                "",
            ]
        )
    }
    for group in GROUPS:
        module = importlib.import_module(group.module)
        lines = [
            group.title,
            "=" * len(group.title),
            "",
            group.intro,
            "",
            f".. currentmodule:: {group.module}",
            "",
            ".. autosummary::",
            "   :nosignatures:",
            "",
            *(f"   {name}" for name in names[group.key]),
            "",
        ]
        for name in names[group.key]:
            lines += [directive(getattr(module, name), name), ""]
        pages[f"{group.key}.rst"] = "\n".join(lines)
    written = []
    for file, text in pages.items():
        path = out / file
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(str(path))
    return written


if __name__ == "__main__":
    for key, members in groups().items():
        print(f"{key} ({len(members)}): {', '.join(members)}")
