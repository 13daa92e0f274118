r"""What happens when a schedule gives a value outside its hyperparameter's range.

A built-in schedule checks its arguments when it is built, so its values stay in range. A
schedule of your own is any function ``step -> value``, and a hand-written decay such as
``lambda s: 1e-2 * (1 - s / 100)`` goes negative past its horizon: with a negative learning rate
every update climbs the loss. For the hyperparameters whose range means the same in every
transform (table below), each scheduled value goes through :func:`in_range` before the update
uses it:

- **outside** ``jax.jit`` (the count and the value are concrete), a value out of range, or not
  finite, raises ``ValueError`` naming the hyperparameter, the step and the value;
- **inside** ``jax.jit`` (nothing can be raised there), the value is clamped into range: a
  learning rate or weight decay below 0 becomes 0, so training stops instead of going uphill; a
  ``b1``, ``b2``, ``momentum`` or ``decay`` at or above 1 becomes the largest float below 1. The
  clamped value is the one the state records, so ``optix.get_hyperparams(state)`` shows the value
  the update really used (for example a learning rate of 0.0 where the function gave -0.005).

A NaN passes through unchanged inside ``jit``: nothing can stand in for it. Hyperparameters not in
the table (``scale``'s ``factor``, which may be negative, and names whose range depends on the
transform, such as ``rho``) are left alone.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_NONNEGATIVE = (False, "a finite number >= 0")
_UNIT = (True, "in [0, 1)")
# name -> (upper bound is "just below 1", description); the lower bound is always 0. These agree
# with the ranges set_hyperparams enforces for the same names (tests/test_schedules.py checks).
GUARDED: dict[str, tuple[bool, str]] = {
    "learning_rate": _NONNEGATIVE,
    "weight_decay": _NONNEGATIVE,
    "eps": _NONNEGATIVE,
    "b1": _UNIT,
    "b2": _UNIT,
    "momentum": _UNIT,
    "decay": _UNIT,
}


def _upper(below_one: bool, dtype: Any) -> float:
    return float(np.nextafter(np.array(1, dtype), np.array(0, dtype))) if below_one else math.inf


def in_range(name: str, value: jax.Array, count: jax.Array) -> jax.Array:
    """``value``, the schedule for ``name`` at step ``count``, checked or clamped into range."""
    if name not in GUARDED:
        return value
    below_one, expected = GUARDED[name]
    hi = _upper(below_one, value.dtype)
    if isinstance(value, jax.core.Tracer):
        return jnp.clip(value, 0.0, hi)
    concrete = np.asarray(value)
    bad = ~(np.isfinite(concrete) & (concrete >= 0.0) & (concrete <= hi))
    if np.any(bad):
        step = count if isinstance(count, jax.core.Tracer) else int(np.max(np.asarray(count)))
        raise ValueError(
            f"the schedule for `{name}` gave {float(concrete[bad].ravel()[0])} at step {step}; "
            f"`{name}` must be {expected}. (Inside jax.jit such a value is clamped into range "
            "instead; fix the schedule, for example with jnp.maximum(value, 0.0).)"
        )
    return value
