"""Step arithmetic shared by the schedules, safe for lengths and steps of any size.

Lengths and boundaries are Python ints checked at construction and kept as Python floats (or
compared as ints only where the step's own integer dtype can hold them): an int above the int32
maximum mixed into a jnp operation would otherwise overflow when JAX converts it. Offsets from a
boundary are taken in the step's integer dtype, where they are exact and cannot wrap, and only
then turned into floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from optix import _validate
from optix._hyperparams import hyperparam_dtype


def as_float(x: ArrayLike) -> jax.Array:
    """``x`` in the hyperparameter dtype (float32, or float64 with x64)."""
    return jnp.asarray(x, dtype=hyperparam_dtype())


def length(name: str, value: Any, minimum: int) -> float:
    """A step count argument, checked to be an int ``>= minimum``, as a Python float."""
    _validate.check_int(name, value, minimum=minimum)
    return float(value)


def check_value(name: str, value: Any) -> None:
    """A schedule's value argument: finite and ``>= 0``.

    Every hyperparameter a schedule can drive (learning rates, weight decays, momenta, decay
    rates, epsilons) is non-negative; a negative learning rate trains uphill.
    """
    x = _validate.concrete_float(value)
    if x is not None and not (math.isfinite(x) and x >= 0.0):
        raise ValueError(
            f"`{name}` must be a finite number >= 0, got {value!r}: a schedule's values are "
            "hyperparameters such as learning rates, which are never negative. For a signed "
            "value write the schedule as a plain function step -> value."
        )


def sorted_boundaries_and_scales(
    boundaries_and_scales: Mapping[int, ArrayLike] | None,
) -> list[tuple[int, ArrayLike]]:
    """``(boundary, scale)`` pairs sorted by boundary: int boundaries >= 0, scales finite >= 0."""
    items = sorted((boundaries_and_scales or {}).items())
    for b, f in items:
        _validate.check_int("boundaries_and_scales boundary", b, minimum=0)
        _validate.check_nonnegative(f"boundaries_and_scales[{b}]", f)
    return items


def like_step(n: int, s: jax.Array) -> np.ndarray:
    """The int ``n`` in the integer dtype of the step ``s`` (which must hold it). A bare Python
    int above the int32 maximum would overflow as JAX converts it, whatever the step's dtype."""
    return np.asarray(n, s.dtype)


def _int_limit(s: jax.Array) -> int | None:
    """The largest value of the step's integer dtype, or None for a float step."""
    return int(jnp.iinfo(s.dtype).max) if jnp.issubdtype(s.dtype, jnp.integer) else None


def elapsed(step: ArrayLike, begin: int = 0) -> jax.Array:
    """``max(step - begin, 0)`` as a float: exact for integer steps, never wrapping."""
    s = jnp.asarray(step)
    limit = _int_limit(s)
    if limit is None:
        return jnp.maximum(as_float(s) - float(begin), 0.0)
    if begin > limit:  # a step of this dtype never gets there
        return jnp.zeros(s.shape, hyperparam_dtype())
    b = like_step(begin, s)
    # The difference is formed in the step's own dtype only where it is >= 0, so it fits.
    return as_float(jnp.where(s >= b, s - b, jnp.zeros_like(s)))


def reached(step: ArrayLike, boundary: int) -> jax.Array:
    """``step >= boundary``, exact for integer steps, and False where the dtype cannot hold it."""
    s = jnp.asarray(step)
    limit = _int_limit(s)
    if limit is None:
        return s >= float(boundary)
    if boundary > limit:
        return jnp.zeros(s.shape, bool)
    return s >= like_step(boundary, s)


def periods(step: ArrayLike, size: int, begin: int = 0) -> jax.Array:
    """``floor(max(step - begin, 0) / size)`` as a float: whole periods of ``size`` steps done.

    Integer division for integer steps, so it is exact at every step (a float32 step is not
    above 2^24); float steps go through :func:`floor_div`.
    """
    s = jnp.asarray(step)
    limit = _int_limit(s)
    if limit is None:
        return floor_div(elapsed(s, begin), float(size))
    if begin > limit or size > limit:  # no step of this dtype completes a period
        return jnp.zeros(s.shape, hyperparam_dtype())
    b = like_step(begin, s)
    done = jnp.where(s >= b, s - b, jnp.zeros_like(s))
    return as_float(done // like_step(size, s))


def floor_div(x: jax.Array, d: float) -> jax.Array:
    """``floor(x / d)`` for ``x >= 0``, settled with exact products.

    XLA may compute ``x / d`` as ``x * (1 / d)``, which lands just below an integer at some
    multiples of ``d``; the two corrections make the quotient exact whenever ``x`` is.
    """
    q = jnp.floor(x / d)
    q = jnp.where(q * d > x, q - 1, q)
    return jnp.where((q + 1) * d <= x, q + 1, q)
