"""Checks for optimizer state read back from a checkpoint.

A checkpoint stores the state's arrays; the transform defines the structure they belong in. Both
helpers here compare a restored state with ``jax.eval_shape(tx.init, params)``, the state this
transform builds for these params, leaf by leaf and by path, so that a checkpoint written by a
different optimizer (or for other params, or in other dtypes) is refused when it is loaded, with
the first mismatching path named, rather than failing later inside an update or, worse, resuming
with silently converted arrays.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix import _paths
from optix._base import GradientTransformation, OptState, Params


def _leaves_by_path(tree: Any) -> dict[str, Any]:
    return {_paths.path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _describe(x: Any) -> str:
    return f"{np.dtype(x.dtype).name}{list(x.shape)}"


def _compare(expected: dict[str, Any], found: dict[str, Any]) -> None:
    missing = [p for p in expected if p not in found]
    if missing:
        raise ValueError(
            f"the restored state has no leaf at '{missing[0]}', which this transform's state has "
            f"({len(missing)} missing in all); was the checkpoint written by another optimizer or "
            "for other params?"
        )
    extra = [p for p in found if p not in expected]
    if extra:
        raise ValueError(
            f"the restored state has a leaf at '{extra[0]}', which this transform's state does "
            f"not have ({len(extra)} extra in all); was the checkpoint written by another "
            "optimizer or for other params?"
        )
    for path, want in expected.items():
        got = found[path]
        shape, dtype = np.shape(got), getattr(got, "dtype", np.asarray(got).dtype)
        if tuple(shape) != tuple(want.shape) or np.dtype(dtype) != np.dtype(want.dtype):
            raise ValueError(
                f"the restored state's leaf '{path}' is {np.dtype(dtype).name}{list(shape)}, but "
                f"this transform's state holds {_describe(want)} there"
            )


def check_state(tx: GradientTransformation, state: OptState, params: Params) -> None:
    """Raise ``ValueError`` unless ``state`` is a state ``tx`` could have built for ``params``.

    The leaves are compared by path, shape and dtype with ``jax.eval_shape(tx.init, params)``
    (nothing is computed), then the tree structure (the state's NamedTuple types included). Call
    it on a state restored from a checkpoint before resuming.

    Args:
      tx: the transform that will continue from ``state``.
      state: the restored state.
      params: the params (or their shapes, ``jax.ShapeDtypeStruct`` leaves) it will update.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.zeros(3)}
      >>> optix.check_state(optix.adam(1e-3), optix.adam(1e-3).init(params), params)
      >>> optix.check_state(optix.adamw(1e-3), optix.adam(1e-3).init(params), params)
      Traceback (most recent call last):
      ...
      ValueError: the restored state has no leaf at '1/hyperparams/values/weight_decay', ...
    """
    expected = jax.eval_shape(tx.init, params)
    _compare(_leaves_by_path(expected), _leaves_by_path(state))
    if jax.tree.structure(state) != jax.tree.structure(expected):
        raise ValueError(
            "the restored state has the leaves of this transform's state but not its structure "
            f"(container types differ): {jax.tree.structure(state)} vs "
            f"{jax.tree.structure(expected)}; restore it with `restore_state`"
        )


def restore_state(tx: GradientTransformation, restored: Any, params: Params) -> OptState:
    """Put the arrays of a restored checkpoint back into the structure of ``tx``'s state.

    ``restored`` may have the state's own structure, or the plain dicts and lists a checkpointer
    returns when restoring without a target (orbax's ``restore(path)``): leaves are matched by
    their ``/``-joined paths (a NamedTuple field and a dict key of the same name give the same
    path), and must have exactly the shapes and dtypes of ``jax.eval_shape(tx.init, params)``;
    no leaf may be missing or left over. Nothing is cast.

    Args:
      tx: the transform that will continue from the state.
      restored: the restored tree of arrays.
      params: the params (or their shapes) the state will update.

    Returns:
      The state, with ``tx.init``'s structure and the restored arrays as leaves.

    Raises:
      ValueError: naming the first path that is missing, left over, or of another shape or dtype.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx, params = optix.adam(1e-3), {"w": jnp.zeros(3)}
      >>> saved = {"0": {"hyperparams": {"count": jnp.int32(4), "values": {"b1": jnp.float32(0.9),
      ...     "b2": jnp.float32(0.999), "eps": jnp.float32(1e-8), "eps_root": jnp.float32(0.0)}},
      ...     "mu": {"w": jnp.ones(3)}, "nu": {"w": jnp.ones(3)}},
      ...     "1": {"hyperparams": {"count": jnp.int32(4), "values": {"learning_rate": jnp.float32(1e-3)}}}}
      >>> type(optix.restore_state(tx, saved, params)[0]).__name__
      'ScaleByAdamState'
    """
    expected = jax.eval_shape(tx.init, params)
    found = _leaves_by_path(restored)
    want = _leaves_by_path(expected)
    _compare(want, found)
    leaves = [jnp.asarray(found[path]) for path in want]
    return jax.tree.unflatten(jax.tree.structure(expected), leaves)
