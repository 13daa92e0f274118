"""Checks for optimizer state read back from a checkpoint.

A checkpoint stores the state's arrays; the transform defines the structure they belong in. Both
helpers here compare a restored state with ``jax.eval_shape(tx.init, params)``, the state this
transform builds for these params, leaf by leaf and by path, so that a checkpoint written by a
different optimizer (or for other params, or in other dtypes) is refused when it is loaded, with
the first mismatching path named, rather than failing later inside an update or, worse, resuming
with silently converted arrays.

Leaves are matched by their key paths, part by part, so a dict key that holds ``/`` (``"a/b"``)
and a nested path that spells the same (``"a"`` then ``"b"``) stay apart. A tree whose paths
were flattened into ``/``-joined strings (a ``.npz`` keyed by path) is matched by that text where
no part-by-part match exists. An ``nnx.Variable`` (``nnx.Optimizer`` wraps each array of its
``opt_state`` in one) is read as the array it holds, and a trailing ``value`` key, which a saved
``Variable`` leaves behind in a checkpoint restored without a target, is accepted.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix import _paths
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._hyperparams import pure

Parts = tuple[str, ...]


def _leaves(tree: Any) -> list[tuple[Parts, Any]]:
    """(path parts, leaf) for every leaf, an nnx Variable counting as the array it holds."""
    return [(p, x) for p, x in _paths.positions(tree) if x is not None]


def _text(parts: Parts) -> str:
    return "/".join(parts) or "<root>"


def _describe(x: Any) -> str:
    return f"{np.dtype(x.dtype).name}{list(x.shape)}"


def _match(expected: list[tuple[Parts, Any]], found: list[tuple[Parts, Any]]) -> dict[Parts, Any]:
    """Each expected path's restored leaf: by parts, else by ``/``-joined text (a trailing
    ``value`` dropped); raises naming the first path missing, left over or of another kind."""
    want = {p: x for p, x in expected}
    got: dict[Parts, Any] = {}
    rest = []
    for parts, x in found:
        if parts in want and parts not in got:
            got[parts] = x
        else:
            rest.append((parts, x))
    by_text: dict[str, list[Parts]] = {}
    for parts in want:
        if parts not in got:
            by_text.setdefault("/".join(parts), []).append(parts)
    extra = []
    for parts, x in rest:
        text = "/".join(parts)
        options = by_text.get(text, [])
        if not options and parts and parts[-1] == "value":
            text = "/".join(parts[:-1])
            options = by_text.get(text, [])
        options = [o for o in options if o not in got]
        if len(options) > 1:
            raise ValueError(
                f"the restored leaf at '{text}' could belong to several leaves of this "
                f"transform's state ({', '.join(repr(o) for o in options)}), whose keys hold "
                "'/'; restore a tree with the state's own nesting rather than '/'-joined paths"
            )
        if options:
            got[options[0]] = x
        else:
            extra.append(parts)
    missing = [p for p in want if p not in got]
    if missing:
        raise ValueError(
            f"the restored state has no leaf at '{_text(missing[0])}', which this transform's "
            f"state has ({len(missing)} missing in all); was the checkpoint written by another "
            "optimizer or for other params?"
        )
    if extra:
        raise ValueError(
            f"the restored state has a leaf at '{_text(extra[0])}', which this transform's state "
            f"does not have ({len(extra)} extra in all); was the checkpoint written by another "
            "optimizer or for other params?"
        )
    for parts, spec in want.items():
        leaf = got[parts]
        shape, dtype = np.shape(leaf), getattr(leaf, "dtype", np.asarray(leaf).dtype)
        if tuple(shape) != tuple(spec.shape) or np.dtype(dtype) != np.dtype(spec.dtype):
            raise ValueError(
                f"the restored state's leaf '{_text(parts)}' is {np.dtype(dtype).name}"
                f"{list(shape)}, but this transform's state holds {_describe(spec)} there"
            )
    return got


def check_state(tx: GradientTransformation, state: OptState, params: Params) -> None:
    """Raise ``ValueError`` unless ``state`` is a state ``tx`` could have built for ``params``.

    The leaves are compared by path, shape and dtype with ``jax.eval_shape(tx.init, params)``
    (nothing is computed), then the tree structure (the state's NamedTuple types included). Call
    it on a state restored from a checkpoint before resuming. An ``nnx.Optimizer``'s
    ``opt_state`` is checked as the arrays its ``nnx.Variable`` wrappers hold.

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
    _match(_leaves(expected), _leaves(state))
    got, want = jax.tree.structure(pure(state)), jax.tree.structure(pure(expected))
    if got != want:
        raise ValueError(
            "the restored state has the leaves of this transform's state but not its structure "
            f"(container types differ): {got} vs {want}; restore it with `restore_state`"
        )


def restore_state(tx: GradientTransformation, restored: Any, params: Params) -> OptState:
    """Put the arrays of a restored checkpoint back into the structure of ``tx``'s state.

    ``restored`` may have the state's own structure, or the plain dicts and lists a checkpointer
    returns when restoring without a target (orbax's ``restore(path)``): leaves are matched by
    their paths (a NamedTuple field and a dict key of the same name give the same path; a flat
    dict keyed by ``/``-joined paths works too), and must have exactly the shapes and dtypes of
    ``jax.eval_shape(tx.init, params)``; no leaf may be missing or left over. Nothing is cast.
    ``restored`` may come from an ``nnx.Optimizer``'s ``opt_state`` (``nnx.Variable`` wrappers,
    or the ``value`` keys they leave in a target-less restore).

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
    want = _leaves(expected)
    got = _match(want, _leaves(restored))
    leaves = [jnp.asarray(got[parts]) for parts, _ in want]
    return jax.tree.unflatten(jax.tree.structure(expected), leaves)
