r"""Replace NaNs in the updates by zeros, and record where they were."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _validate
from optix._base import GradientTransformation


class ZeroNansState(NamedTuple):
    """State of :func:`zero_nans`.

    Attributes:
      found_nan: a tree shaped like the params with one bool scalar per leaf: whether that leaf's
        update held a NaN at the most recent step. Only a record; the transform never reads it.
    """

    found_nan: Any


def zero_nans() -> GradientTransformation:
    r"""Set every NaN element of the updates to 0 (a complex element when either part is NaN).

    .. math:: u_i = \begin{cases} 0 & g_i \text{ is NaN} \\ g_i & \text{otherwise} \end{cases}

    Infinities are kept. ``state.found_nan`` records, per leaf, whether the last update held a NaN,
    as optax's ``zero_nans`` does. To skip a whole step instead (zero updates and the optimizer's
    state untouched), wrap the optimizer in :func:`skip_nonfinite`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.zero_nans()
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> updates, state = tx.update({"w": jnp.array([1.0, jnp.nan])}, state)
      >>> updates["w"], bool(state.found_nan["w"])
      (Array([1., 0.], dtype=float32), True)
    """

    def init(params):
        _validate.check_float_leaves(params, "`zero_nans` params")
        return ZeroNansState(jax.tree.map(lambda _: jnp.zeros([], jnp.bool_), params))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`zero_nans` updates")
        _validate.check_same_structure(updates, state.found_nan, "updates", "the `zero_nans` state")
        nan = jax.tree.map(jnp.isnan, updates)
        found = jax.tree.map(jnp.any, nan)
        out = jax.tree.map(lambda u, n: jnp.where(n, jnp.zeros_like(u), u), updates, nan)
        return out, ZeroNansState(found)

    return GradientTransformation(init, update)
