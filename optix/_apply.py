"""Applying updates to parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _keypath
from optix import _tree
from optix import _validate
from optix._base import Params
from optix._base import Updates


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
        _validate.check_matches_params(updates, params)
        raise

    paths = [_keypath.path_str(path) for path, _ in _flatten_with_path(params)]

    def add(path, p, u):
        if p is None or u is None:
            return p
        p, u = jnp.asarray(p), jnp.asarray(u)
        if p.shape != u.shape:
            raise ValueError(
                f"apply_updates: the update for '{path}' has shape {u.shape} but the param has "
                f"shape {p.shape}; an update is never broadcast into a param"
            )
        if _kind(u.dtype) > _kind(p.dtype):
            raise TypeError(
                f"apply_updates: the update for '{path}' has dtype {u.dtype} but the param has "
                f"dtype {p.dtype}; adding it would silently drop its "
                f"{'imaginary part' if _kind(u.dtype) == 2 else 'fraction'}"
            )
        return rounded_sum(p, u)

    leaves = zip(paths, p_leaves, u_leaves, strict=True)
    return treedef.unflatten([add(path, p, u) for path, p, u in leaves])


def rounded_sum(p: jax.Array, u: jax.Array) -> jax.Array:
    """One leaf of :func:`apply_updates`: ``p + u`` formed in the wider of the two dtypes, then
    rounded (to nearest, ties to even) to ``p``'s dtype. Wrappers that steer the rounding
    (``stochastic_rounding``, ``kahan_summation``) predict the new param with this same function."""
    wide = _tree.wider(p.dtype, u.dtype)
    return (p.astype(wide) + u.astype(wide)).astype(p.dtype)


def _flatten_with_path(tree: Params) -> list:
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)[0]


def _kind(dtype: jnp.dtype) -> int:
    """0 for bool and integers, 1 for real floats, 2 for complex: adding a higher kind onto a lower
    one loses information."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return 2
    return 1 if jnp.issubdtype(dtype, jnp.floating) else 0


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
