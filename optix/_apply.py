"""Applying updates to parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _tree, _validate
from optix._base import Params, Updates


def _is_none(x: object) -> bool:
    return x is None


def apply_updates(params: Params, updates: Updates) -> Params:
    """Return ``params + updates``, leaf by leaf, each result in its param's dtype.

    The sum is formed in the wider of the two dtypes before rounding back, so bf16 params with
    float32 updates lose nothing extra. ``None`` leaves (params with no update) pass through.
    Nothing here flips a sign: updates from :func:`optix.scale_lr` already point downhill.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.apply_updates({"w": jnp.ones(2)}, {"w": jnp.full(2, -0.5)})
      {'w': Array([0.5, 0.5], dtype=float32)}
    """
    p_leaves, treedef = jax.tree.flatten(params, is_leaf=_is_none)
    try:
        u_leaves = treedef.flatten_up_to(updates)
    except (ValueError, TypeError):
        _validate.check_same_structure(updates, params, "updates", "params")
        raise

    def add(p, u):
        if p is None or u is None:
            return p
        p = jnp.asarray(p)
        wide = _tree.wider(p.dtype, jnp.result_type(u))
        return (p.astype(wide) + jnp.asarray(u).astype(wide)).astype(p.dtype)

    return treedef.unflatten([add(p, u) for p, u in zip(p_leaves, u_leaves, strict=True)])


def incremental_update(new: Params, old: Params, step_size: ArrayLike) -> Params:
    """Move ``old`` towards ``new``: ``step_size * new + (1 - step_size) * old`` (target networks).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.incremental_update(jnp.ones(2), jnp.zeros(2), 0.1)
      Array([0.1, 0.1], dtype=float32)
    """
    _validate.check_closed_unit_interval("step_size", step_size)
    _validate.check_same_structure(new, old, "new", "old")

    def mix(n, o):
        o = jnp.asarray(o)
        with jax.numpy_dtype_promotion("standard"):
            out = step_size * n + (1 - step_size) * o
        return out.astype(o.dtype)

    return jax.tree.map(mix, new, old)
