"""Argument and tree-structure checks that fail early with messages naming the culprit.

Hyperparameter checks only look at *concrete* values: a traced value (an optimizer built inside
``jax.jit``) or a schedule (checked when it is evaluated) passes through untouched. A concrete
hyperparameter must be a real scalar (a Python number, a NumPy scalar or a 0-d array; not a bool,
a string, None or a complex number), and its range is checked twice: as given, and as it will be
stored (float32, or float64 under ``jax_enable_x64``), so that ``b1=0.99999999``, which float32
rounds to exactly 1, is refused rather than dividing by zero later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix._keypath import path_str


def concrete_float(value: Any) -> float | None:
    """The value as a Python float when it is a concrete real scalar, else None."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything unconvertible is left to jnp to reject later
        return None
    if arr.shape != () or not jnp.issubdtype(arr.dtype, jnp.number):
        return None
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise ValueError(f"hyperparameter must be real, got complex value {value!r}")
    return float(arr)


def stored_dtype() -> np.dtype:
    """The dtype hyperparameters are stored in: float32, or float64 when ``jax_enable_x64`` is on."""
    return np.dtype(np.float64 if jax.config.read("jax_enable_x64") else np.float32)


def check_scalar(name: str, value: Any) -> None:
    """Raise unless a concrete ``value`` is a real scalar number (a schedule or tracer passes).

    ``TypeError`` for a bool, None, a string or another non-number, ``ValueError`` for a complex
    number or an array that is not 0-d (it would broadcast into the params).
    """
    if callable(value) or isinstance(value, jax.core.Tracer):
        return
    if value is None or isinstance(value, str | bytes):
        raise TypeError(
            f"`{name}` must be a real number or a schedule, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        arr = value  # read its dtype and shape without copying it to the host
    else:
        try:
            arr = np.asarray(value)
        except Exception as error:  # noqa: BLE001 - reported with the argument's name
            raise TypeError(
                f"`{name}` must be a real number, got {type(value).__name__} {value!r}"
            ) from error
    if arr.dtype == np.bool_:
        raise TypeError(f"`{name}` must be a real number, not a bool, got {value!r}")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise ValueError(f"`{name}` must be a real number, got complex value {value!r}")
    if not jnp.issubdtype(arr.dtype, jnp.number):
        raise TypeError(
            f"`{name}` must be a real number, got {type(value).__name__} {value!r} "
            f"(dtype {arr.dtype})"
        )
    if arr.shape != ():
        raise ValueError(
            f"`{name}` must be a scalar, got an array of shape {arr.shape}; hyperparameters are "
            "scalars (to sweep several values, vmap over `optix.set_hyperparams`)"
        )


def _as_stored(x: float, dtype: np.dtype) -> float:
    with np.errstate(over="ignore", under="ignore"):
        return float(np.asarray(x).astype(dtype))


def _check(name: str, value: Any, ok: Callable[[float], bool], expected: str) -> None:
    check_scalar(name, value)
    x = concrete_float(value)
    if x is None:
        return
    if math.isnan(x) or not ok(x):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")
    dtype = stored_dtype()
    stored = _as_stored(x, dtype)
    if not ok(stored):
        why = "jax_enable_x64 is on" if dtype == np.float64 else "jax_enable_x64 is off"
        raise ValueError(
            f"`{name}` must be {expected}, got {value!r}, which rounds to {stored!r} in "
            f"{dtype.name}, the dtype hyperparameters are stored in ({why}); choose a value "
            "further from the bound"
        )


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


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")


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
    check_shapes(updates, reference, "updates", f"the `{transform}` state")


def _shape(leaf: Any) -> tuple[int, ...] | None:
    shape = getattr(leaf, "shape", None)
    if shape is None and isinstance(leaf, int | float | complex | np.number):
        return ()
    return None if shape is None else tuple(shape)


def check_shapes(tree: Any, reference: Any, what: str, reference_what: str) -> None:
    """Raise ``ValueError`` naming the first path where a leaf of ``tree`` and the matching leaf
    of ``reference`` have different shapes (nothing is ever broadcast into params or state).

    Leaves are matched through ``tree``'s structure (``None`` leaves and leaves without a shape are
    passed over); trees whose structures differ are left to :func:`check_same_structure`.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    try:
        ref_leaves = treedef.flatten_up_to(reference)
    except (ValueError, TypeError):
        return
    for (path, leaf), ref in zip(leaves, ref_leaves, strict=True):
        shape, ref_shape = _shape(leaf), _shape(ref)
        if shape is not None and ref_shape is not None and shape != ref_shape:
            raise ValueError(
                f"{what} leaf '{path_str(path)}' has shape {shape} but {reference_what} has "
                f"shape {ref_shape} there; optix never broadcasts an update into params or state "
                "(was the gradient taken with respect to the same params?)"
            )


def check_matches_params(updates: Any, params: Any) -> None:
    """Raise ``ValueError`` naming the first path where ``updates`` and ``params`` differ in
    structure or in a leaf's shape."""
    check_same_structure(updates, params, "updates", "params")
    check_shapes(updates, params, "updates", "params")


def raw_key(seed: Any) -> jax.Array:
    """The raw ``uint32`` key data of ``seed`` (an int, a typed PRNG key or raw key data), as a
    state keeps it; ``TypeError`` naming ``seed`` for anything else."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return jax.random.PRNGKey(int(seed))
    arr = jnp.asarray(seed)
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(arr)
    if arr.dtype != jnp.uint32:
        raise TypeError(f"`seed` must be an int or a PRNG key, got {seed!r}")
    return arr
