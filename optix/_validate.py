"""Argument and tree-structure checks that fail early with messages naming the culprit.

Hyperparameter checks only look at *concrete* values: a traced value (an optimizer built inside
``jax.jit``) or a schedule (checked when it is evaluated) passes through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix._paths import path_str


def concrete_float(value: Any) -> float | None:
    """The value as a Python float when it is a concrete real scalar, else None."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything unconvertible is left to jnp to reject later
        return None
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        return None
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"hyperparameter must be real, got complex value {value!r}")
    return float(arr)


def _check(name: str, value: Any, ok: Callable[[float], bool], expected: str) -> None:
    x = concrete_float(value)
    if x is None:
        return
    if math.isnan(x) or not ok(x):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` is negative or NaN."""
    _check(name, value, lambda x: 0.0 <= x < math.inf, "a finite number >= 0")


def check_positive(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` is not strictly positive (or is NaN or inf)."""
    _check(name, value, lambda x: 0.0 < x < math.inf, "a finite number > 0")


def check_unit_interval(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` is outside ``[0, 1)``."""
    _check(name, value, lambda x: 0.0 <= x < 1.0, "in [0, 1)")


def check_open_unit_interval(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` is outside ``(0, 1)``."""
    _check(name, value, lambda x: 0.0 < x < 1.0, "in (0, 1)")


def check_closed_unit_interval(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` is outside ``[0, 1]``."""
    _check(name, value, lambda x: 0.0 <= x <= 1.0, "in [0, 1]")


def check_finite(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` is NaN or infinite."""
    _check(name, value, math.isfinite, "finite")


def check_int(name: str, value: Any, minimum: int = 0) -> None:
    """Raise unless ``value`` is a Python or NumPy integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")


def check_float_leaves(tree: Any, what: str) -> None:
    """Raise ``TypeError`` naming the first leaf of ``tree`` that is not a float or complex array."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{what} leaf '{path_str(path)}' has dtype {dtype}; optix only optimizes float or "
                "complex leaves. Filter integer and boolean leaves out of the tree (for example "
                "with `optix.masked` or `eqx.filter`) before calling the optimizer."
            )


def check_real_leaves(tree: Any, transform: str, why: str = "") -> None:
    """Raise ``TypeError`` naming the first complex leaf of ``tree`` (params of ``transform``);
    ``why``, when given, ends the message."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"`{transform}` does not support complex params (leaf '{path_str(path)}')"
                + (f": {why}" if why else "")
            )


def check_same_structure(tree: Any, reference: Any, what: str, reference_what: str) -> None:
    """Raise ``ValueError`` when ``tree`` and ``reference`` have different pytree structures.

    The message names the first path present in one tree but not the other.
    """
    treedef, ref_treedef = jax.tree.structure(tree), jax.tree.structure(reference)
    if treedef == ref_treedef:
        return
    paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
    ref_paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(reference)]
    only = [p for p in paths if p not in set(ref_paths)]
    ref_only = [p for p in ref_paths if p not in set(paths)]
    detail = []
    if only:
        detail.append(f"'{only[0]}' is in {what} but not in {reference_what}")
    if ref_only:
        detail.append(f"'{ref_only[0]}' is in {reference_what} but not in {what}")
    if not detail:
        detail.append(f"{what} has structure {treedef} but {reference_what} has {ref_treedef}")
    raise ValueError(
        f"{what} do not have the structure of {reference_what}: " + "; ".join(detail) + "."
    )


def require_params(params: Any, transform: str) -> None:
    """Raise ``ValueError`` when a transform that reads ``params`` is given ``None``."""
    if params is None:
        raise ValueError(
            f"`{transform}` needs the current parameters: call "
            "`update(updates, state, params)` with `params` set, not None."
        )


def check_updates(updates: Any, reference: Any, transform: str) -> None:
    """The checks every stateful ``update`` makes: float leaves, and the structure of its state."""
    check_float_leaves(updates, f"`{transform}` updates")
    check_same_structure(updates, reference, "updates", f"the `{transform}` state")
