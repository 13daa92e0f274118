"""Every field of a nested optimizer state, addressable by a readable path.

Paths join dict keys, NamedTuple field names and sequence indices with ``/``. Inside a
:class:`~optix.HyperparamState` the ``hyperparams``, ``values`` and ``scheduled`` levels are left
out, so a learning rate reads ``"1/learning_rate"`` and a transform's step count ``"0/count"``.
An address matches a path when its parts appear in the path in order and its last part is the
path's last part: ``"mu"``, ``"adam/mu"`` and ``"adam/0/mu"`` all find Adam's first moment in
``named_chain(adam=optix.adam(1e-3))``.

An ``nnx.Optimizer``'s ``opt_state`` wraps every array in an ``nnx.Variable``: a wrapped array is
one field here, read as the array, and replaced inside a new wrapper of the same type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix import _keypath
from optix import _paths
from optix._base import OptState
from optix._hyperparams import HyperparamState
from optix._hyperparams import pure
from optix._hyperparams import unbox

_HP_FIELDS = ("values", "scheduled")


def _is_leaf_node(node: Any) -> bool:
    """An array (or other true leaf, or an nnx Variable); empty containers and None are not."""
    if _paths.is_nnx_variable(node):
        return True
    leaves = jax.tree.leaves(node)
    return len(leaves) == 1 and leaves[0] is node


def _children(node: Any) -> list[tuple[Any, Any]]:
    pairs = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0]
    return [(path[0], child) for path, child in pairs if path]


def _walk(node: Any, raw: tuple = (), readable: tuple = (), shown: bool = True) -> Iterator[tuple]:
    """(readable parts, raw key path, node, shown) for every node below ``node``, parents first.

    ``shown`` is False for the levels that readable paths leave out (a HyperparamState and its
    ``values`` and ``scheduled`` dicts): their children appear directly under the transform.
    """
    yield readable, raw, node, shown
    if node is None or _is_leaf_node(node):
        return
    hp = isinstance(node, HyperparamState)
    for key, child in _children(node):
        name = _keypath.key_str(key)
        skip = (hp and name in _HP_FIELDS) or isinstance(child, HyperparamState)
        yield from _walk(child, raw + (key,), readable if skip else readable + (name,), not skip)


def state_paths(state: OptState) -> list[str]:
    """The readable path of every array in ``state``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.named_chain(clip=optix.clip(1.0), adam=optix.adam(1e-3))
      >>> optix.state_paths(tx.init({"w": jnp.zeros(2)}))[:4]
      ['adam/0/count', 'adam/0/b1', 'adam/0/b2', 'adam/0/eps']
    """
    return ["/".join(r) for r, _, node, _ in _walk(state) if r and _is_leaf_node(node)]


def _find(state: Any, address: str) -> tuple[tuple, Any]:
    parts = tuple(p for p in address.split("/") if p)
    if not parts:
        raise ValueError(f"empty state path {address!r}")
    hits = [
        (r, raw, node)
        for r, raw, node, shown in _walk(state)
        if shown and _paths.address_matches(parts, r)
    ]
    if not hits:
        raise ValueError(
            f"no state field {address!r}; `optix.state_paths(state)` lists the addressable paths"
        )
    if len(hits) > 1:
        where = ", ".join("/".join(r) for r, _, _ in hits[:10])
        raise ValueError(f"state path {address!r} is ambiguous; address one of: {where}")
    _, raw, node = hits[0]
    return raw, node


def state_get(state: OptState, address: str) -> Any:
    """The field (an array or a whole subtree, with arrays for nnx Variables) at ``address``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.named_chain(adam=optix.adam(1e-3))
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> optix.state_get(state, "adam/mu")
      {'w': Array([0., 0.], dtype=float32)}
    """
    return pure(_find(state, address)[1])


def state_set(state: OptState, address: str, value: Any) -> OptState:
    """``state`` with the field at ``address`` replaced by ``value``; nothing else changes.

    ``value`` must have the field's tree structure and shapes; it is cast to the field's dtypes, so
    a jitted step does not recompile. Hyperparameters are better set with
    :func:`optix.set_hyperparams`, which also checks their range.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.named_chain(adam=optix.adam(1e-3))
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> state = optix.state_set(state, "adam/0/count", 10)
      >>> int(optix.state_get(state, "adam/0/count"))
      10
    """
    raw, old = _find(state, address)
    old_leaves, old_def = jax.tree.flatten(pure(old))
    new_leaves, new_def = jax.tree.flatten(pure(value))
    if new_def != old_def:
        raise ValueError(
            f"state field {address!r} has structure {old_def}, got a value with structure {new_def}"
        )
    cast = []
    for o, n in zip(old_leaves, new_leaves, strict=True):
        o = jnp.asarray(o)
        if np.shape(n) != o.shape:
            raise ValueError(f"state field {address!r} has shape {o.shape}, got {np.shape(n)}")
        cast.append(jnp.asarray(n).astype(o.dtype))
    replacements = iter(cast)

    def swap(path, leaf):
        return next(replacements) if tuple(path[: len(raw)]) == tuple(raw) else leaf

    return jax.tree_util.tree_map_with_path(swap, state)


def _describe(node: Any) -> str:
    node = unbox(node)
    if node is None:
        return "None"
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        dims = ",".join(str(d) for d in node.shape)
        text = f"{jnp.dtype(node.dtype).name}[{dims}]"
        if node.shape == () and not isinstance(node, jax.core.Tracer):
            text += (
                f" = {np.asarray(node).item():.6g}"
                if jnp.issubdtype(node.dtype, jnp.inexact)
                else f" = {np.asarray(node).item()}"
            )
        return text
    return type(node).__name__


def format_state(state: OptState) -> str:
    """A readable, indented tree of ``state``: each field's name, dtype, shape and scalar value.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> print(optix.format_state(optix.sgd(0.1).init({"w": jnp.zeros(3)})))
      tuple
        0: ScaleLrState
          count: int32[] = 0
          learning_rate: float32[] = 0.1
    """
    lines = []
    for readable, _, node, shown in _walk(state):
        if not shown:
            continue
        if not readable:
            lines.append(_describe(node))
        else:
            lines.append(f"{'  ' * len(readable)}{readable[-1]}: {_describe(node)}")
    return "\n".join(lines)
