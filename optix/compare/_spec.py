"""Optimizer specs: ``"adam:learning_rate=3e-4,b1=0.8,sgd:momentum=0.9"`` -> optimizers to run.

Entries are separated by commas. ``name:key=value`` starts an entry, a bare ``name`` is an entry
with no options, and a further ``key=value`` adds to the entry before it. Names are optix
optimizers (``optix.adam``, ``optix.sgd``, ...) or the presets in :data:`PRESETS`. Values are
Python literals read with :func:`ast.literal_eval`, which never evaluates code. The key ``batch``
is not a hyperparameter: it picks the batch size (``full``, ``mini`` or a number).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optix
from optix._base import GradientTransformation


class SpecError(ValueError):
    """A malformed optimizer spec (or an unknown optimizer name, or a bad hyperparameter)."""


@dataclass(frozen=True)
class Preset:
    optimizer: str
    kwargs: dict[str, Any]
    batch: str | int
    description: str


PRESETS: dict[str, Preset] = {
    "gd": Preset("sgd", {}, "full", "full-batch gradient descent"),
    "sgd1": Preset("sgd", {}, 1, "stochastic gradient descent, batch size 1"),
    "momentum": Preset("sgd", {"momentum": 0.9}, "mini", "heavy-ball momentum 0.9 (Polyak)"),
    "nesterov": Preset("sgd", {"momentum": 0.9, "nesterov": True}, "mini", "Nesterov momentum 0.9"),
}
"""Named entries of the classic set that are optix optimizers with fixed options."""

CLASSIC = "gd,sgd1,sgd,momentum,nesterov,adagrad,rmsprop,adadelta,adam,adamw"
"""The classic optimizers of the default run (``sgd`` alone is mini-batch SGD)."""

FALLBACK_LR = 1e-2
"""The learning rate used when none is given, none is swept, and the optimizer has no default."""


def optimizer_functions() -> dict[str, Callable[..., GradientTransformation]]:
    """Every optix optimizer alias (public, in ``optix.optimizers``, with a ``learning_rate``)."""
    found: dict[str, Callable[..., GradientTransformation]] = {}
    for name in optix.__all__:
        fn = getattr(optix, name, None)
        if not inspect.isfunction(fn) or not fn.__module__.startswith("optix.optimizers"):
            continue
        if "learning_rate" in inspect.signature(fn).parameters:
            found[name] = fn
    return found


def valid_names() -> list[str]:
    return [*PRESETS, *sorted(optimizer_functions())]


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer to compare: an optix optimizer, its options and its batch size.

    Attributes:
      label: the unique name shown in tables and legends.
      name: the name as written (an optix optimizer or a preset).
      factory: the optix function that builds it.
      kwargs: keyword arguments for ``factory`` (without ``learning_rate``, see ``learning_rate``).
      learning_rate: the rate given in the spec, or ``None``.
      batch: ``"full"``, ``"mini"`` (the run's ``batch_size``) or a number of examples.
    """

    label: str
    name: str
    factory: Callable[..., GradientTransformation]
    kwargs: dict[str, Any]
    learning_rate: float | None
    batch: str | int

    def default_lr(self) -> float:
        """The rate to use when it is not swept: the spec's, else the function's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        default = inspect.signature(self.factory).parameters["learning_rate"].default
        if isinstance(default, int | float) and not isinstance(default, bool):
            return float(default)
        return FALLBACK_LR

    def make(self, learning_rate: float | None = None) -> GradientTransformation:
        lr = self.default_lr() if learning_rate is None else learning_rate
        return self.factory(learning_rate=lr, **self.kwargs)

    def batch_size(self, mini: int, n_train: int | None) -> int | None:
        """Examples per step, or ``None`` for the full batch."""
        if n_train is None or self.batch == "full":
            return None
        size = mini if self.batch == "mini" else int(self.batch)
        return None if size >= n_train else size


def _split(text: str) -> list[str]:
    """Split on commas that are outside brackets and quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quote or depth:
        raise SpecError(f"unbalanced brackets or quotes in optimizer spec {text!r}")
    parts.append("".join(current))
    return parts


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

# Words in a parameter's annotation that let it take a tuple, list or dict; any other parameter
# (a number, a schedule, a flag, a dtype) takes one value.
_CONTAINER_TYPES = ("tuple", "Sequence", "list", "dict", "Coeffs", "Mask", "Any", "Callable")


def _flag(name: str, key: str, text: str) -> bool:
    """A boolean option, parsed strictly: true/false, yes/no, on/off or 1/0 (any case, quoted or
    not); anything else is an error (a non-empty string such as ``'no'`` is not true)."""
    word = text.strip()
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        word = word[1:-1]
    word = word.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SpecError(f"{name}: {key} must be true or false (or yes/no, on/off, 1/0), got {text!r}")


def _convert(name: str, key: str, text: str, param: inspect.Parameter | None) -> Any:
    """The value of option ``key`` of optimizer ``name`` written as ``text``, checked against the
    parameter it is passed to (``None`` for one taken through ``**kwargs``)."""
    if param is not None and (
        isinstance(param.default, bool) or str(param.annotation).replace(" ", "") == "bool"
    ):
        return _flag(name, key, text)
    value = _value(key, text)
    if isinstance(value, tuple | list | dict | set) and param is not None:
        annotation = str(param.annotation)
        if not any(word in annotation for word in _CONTAINER_TYPES):
            raise SpecError(
                f"{name}: {key} takes a single value, got {text.strip()!r} (to compare several "
                f"values, give the optimizer once for each: '{name}:{key}=...,{name}:{key}=...')"
            )
    return value


def _value(key: str, text: str) -> Any:
    text = text.strip()
    if key == "batch" and text in ("full", "mini"):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise SpecError(
            f"value of {key!r} must be a Python literal (a number, True/False, a tuple, ...), "
            f"got {text!r}"
        ) from None
    if key == "batch" and not (
        isinstance(value, int) and not isinstance(value, bool) and value > 0
    ):
        raise SpecError(f"batch must be 'full', 'mini' or a positive integer, got {text!r}")
    return value


def _option(entry: dict, piece: str) -> None:
    key, sep, value = piece.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise SpecError(f"expected key=value in optimizer spec, got {piece.strip()!r}")
    if key in entry["kwargs"]:
        raise SpecError(f"{key!r} is given twice for optimizer {entry['name']!r}")
    # kept as written (converted once the optimizer, and so each option's type, is known)
    entry["kwargs"][key] = _value(key, value) if key == "batch" else value.strip()


def parse(text: str) -> list[OptimizerSpec]:
    """Parse an optimizer spec string into :class:`OptimizerSpec` entries (checked, not run).

    Example:
      >>> from optix.compare import parse_spec
      >>> [s.label for s in parse_spec("adam:learning_rate=3e-4,b1=0.8,sgd:momentum=0.9")]
      ['adam', 'sgd']
    """
    entries: list[dict] = []
    for piece in _split(text):
        if not piece.strip():
            raise SpecError(f"empty entry in optimizer spec {text!r}")
        head, colon, rest = piece.partition(":")
        if colon and "=" not in head:
            entries.append({"name": head.strip(), "kwargs": {}})
            if rest.strip():
                _option(entries[-1], rest)
        elif "=" in piece:
            if not entries:
                raise SpecError(f"{piece.strip()!r} comes before any optimizer name")
            _option(entries[-1], piece)
        else:
            entries.append({"name": piece.strip(), "kwargs": {}})
    return _resolve(entries)


def _resolve(entries: list[dict]) -> list[OptimizerSpec]:
    functions = optimizer_functions()
    specs = []
    for entry in entries:
        name, kwargs = entry["name"], dict(entry["kwargs"])
        batch: str | int = kwargs.pop("batch", "mini")
        if name in PRESETS:
            preset = PRESETS[name]
            batch = entry["kwargs"].get("batch", preset.batch)
            factory = functions[preset.optimizer]
        elif name in functions:
            factory = functions[name]
        else:
            raise SpecError(f"unknown optimizer {name!r}; valid names: {', '.join(valid_names())}")
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in kwargs if k not in params and not takes_any]
        if unknown:
            known = ", ".join(["batch", *params])
            raise SpecError(f"{name} has no option {unknown[0]!r}; its options: {known}")
        kwargs = {k: _convert(name, k, v, params.get(k)) for k, v in kwargs.items()}
        if name in PRESETS:
            kwargs = {**PRESETS[name].kwargs, **kwargs}
        lr = kwargs.pop("learning_rate", None)
        if lr is not None and (not isinstance(lr, int | float) or isinstance(lr, bool)):
            raise SpecError(f"{name}: learning_rate must be a number, got {lr!r}")
        spec = OptimizerSpec(name, name, factory, kwargs, None if lr is None else float(lr), batch)
        try:
            spec.make()
        except Exception as err:  # any construction error is the spec's fault: report it
            raise SpecError(f"{name}: {err}") from None
        specs.append(spec)
    return _labelled(specs, entries)


def _labelled(specs: list[OptimizerSpec], entries: list[dict]) -> list[OptimizerSpec]:
    names = [s.name for s in specs]
    out: list[OptimizerSpec] = []
    taken: set[str] = set()
    for spec, entry in zip(specs, entries, strict=True):
        label = spec.name
        if names.count(spec.name) > 1:
            opts = ",".join(f"{k}={v}" for k, v in entry["kwargs"].items())
            label = f"{spec.name}:{opts}" if opts else spec.name
        base, i = label, 2
        while label in taken:
            label, i = f"{base}#{i}", i + 1
        taken.add(label)
        out.append(OptimizerSpec(label, *[getattr(spec, f) for f in _FIELDS[1:]]))
    return out


_FIELDS = ("label", "name", "factory", "kwargs", "learning_rate", "batch")
