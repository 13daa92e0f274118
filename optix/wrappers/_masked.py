"""Masking: run a transform on some leaves only, and freezing leaves outright.

The inner transform sees the updates (and params) with every masked-out leaf replaced by ``None``.
``None`` is an empty pytree, so the inner transform allocates no state and does no work for those
leaves, while the tree keeps the params' structure: masks nest, and path patterns still see the
full paths. The helpers here (resolving a per-leaf spec, selecting leaves) are shared with
:func:`optix.wrappers._partition.partition`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optix import _paths
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import identity
from optix._chain import caller
from optix._chain import check_transform


def _is_none(x: Any) -> bool:
    return x is None


def check_is_tree(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`{name}` must be None, True or False, got {value!r}")


def leaf_values(
    spec: Any,
    tree: Any,
    what: str,
    *,
    is_tree: bool | None,
    check: Callable[[str, Any], Any],
    default: Any = None,
) -> list:
    """Resolve a label or mask ``spec`` against ``tree``: one checked value per leaf of ``tree``.

    ``spec`` is read by :func:`optix._paths.resolve_leaves`: a (prefix) tree, a function of
    ``tree`` or a dict of path patterns (``default`` is the value for a leaf no pattern matches
    or a partial tree leaves out, an error when None). ``check(path, value)`` validates each
    value and returns it normalised.
    """
    values = _paths.resolve_leaves(spec, tree, what, is_tree=is_tree, default=default)
    paths = _paths.leaf_paths(tree)
    return [check(path, value) for path, value in zip(paths, values, strict=True)]


def select(tree: Any, keep: Sequence[bool]) -> Any:
    """``tree`` with the leaves where ``keep`` is False replaced by ``None``."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten([x if k else None for x, k in zip(leaves, keep, strict=True)])


def inner_leaves(new: Any, given: Any, treedef: Any, what: str) -> list:
    """The leaves of an inner transform's output ``new`` at the positions of ``treedef``, with
    ``None`` where the inner transform saw none."""
    _validate.check_same_structure(new, given, f"updates returned by {what}", "updates given to it")
    return treedef.flatten_up_to(new)


def _as_bool(what: str) -> Callable[[str, Any], bool]:
    def check(path: str, value: Any) -> bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, np.ndarray | jax.Array) and not isinstance(value, jax.core.Tracer):
            if value.shape == () and value.dtype == bool:
                return bool(value)
        raise TypeError(
            f"{what} at leaf '{path}' is {value!r}; each leaf needs a concrete True or False "
            "(one flag per array: masks cannot select elements inside an array, or be traced)"
        )

    return check


def _pattern_list(spec: Any) -> Any:
    """A list of path patterns (or one pattern) as a dict ``pattern -> True``, ``"**" -> False``."""
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, list | tuple) and all(isinstance(p, str) for p in spec):
        patterns: dict[str, bool] = dict.fromkeys(spec, True)
        patterns.setdefault("**", False)
        return patterns
    return spec


class MaskedState(NamedTuple):
    """State of :func:`masked` and :func:`freeze`: the inner state, built on the selected leaves."""

    inner_state: OptState  # the inner transform's state, built on the selected leaves only


def _masked_core(
    inner: GradientTransformation,
    mask: Any,
    is_tree: bool | None,
    name: str,
    *,
    freeze: bool,
) -> GradientTransformation:
    """``inner`` on the selected leaves. Selected: mask True (masked) or False (freeze). The other
    leaves pass through (masked) or become zeros (freeze)."""
    check_transform(inner, f"`{name}` inner")
    check_is_tree("mask_is_tree", is_tree)
    if mask is None:
        raise TypeError(f"`{name}` needs a mask, got None")
    mask = _pattern_list(mask)
    what = f"`{name}` mask"
    check = _as_bool(what)
    call = caller(inner)

    def selected(tree):
        values = leaf_values(
            mask, tree, what, is_tree=is_tree, check=check, default=False if freeze else None
        )
        return [v != freeze for v in values]

    def init(params):
        return MaskedState(inner.init(select(params, selected(params))))

    def update(updates, state, params=None, **extra):
        if not isinstance(state, MaskedState):
            raise ValueError(
                f"`{name}` expected a MaskedState, got {type(state).__name__}; was it built by "
                "this transform's init?"
            )
        if params is not None:
            _validate.check_matches_params(updates, params)
        keep = selected(updates if params is None else params)
        leaves, treedef = jax.tree.flatten(updates)
        sub_updates = select(updates, keep)
        sub_params = None if params is None else select(params, keep)
        new, inner_state = call(sub_updates, state.inner_state, sub_params, extra)
        new_leaves = inner_leaves(new, sub_updates, treedef, f"the `{name}` inner transform")

        def other(u):
            return jnp.zeros_like(u) if freeze else u

        out = [n if k else other(u) for u, n, k in zip(leaves, new_leaves, keep, strict=True)]
        return treedef.unflatten(out), MaskedState(inner_state)

    return GradientTransformation(init, update)


def masked(
    inner: GradientTransformation, mask: Any, *, mask_is_tree: bool | None = None
) -> GradientTransformation:
    r"""Apply ``inner`` to the leaves where ``mask`` is True; the others pass through unchanged.

    .. math:: u_i = \begin{cases} \mathrm{inner}(g)_i & m_i \\ g_i & \lnot m_i \end{cases}

    ``inner`` sees the updates and params with every masked-out leaf replaced by ``None``: it keeps
    no state for them and its tree-wide quantities (a global norm, say) only cover the selected
    leaves. The tree keeps the params' structure, so ``masked`` nests, and a mask written for the
    full params also works on such a masked view. The mask is resolved at ``init`` from the params
    and at ``update`` from ``params`` when given, else from ``updates``; it holds one Python bool
    per leaf (it cannot select elements inside an array).

    Args:
      inner: the transform to apply to the selected leaves.
      mask: which leaves ``inner`` sees. One of: a pytree of bools that mirrors the params or
        a prefix of them, where a bool at a subtree covers every leaf below it, as in optax
        (``{"encoder": False, "head": {"w": True, "b": False}}``; an equinox module or other
        callable pytree counts as a tree); a function ``params -> such a pytree``; a dict of path
        patterns to bools, recognised by a key holding ``*``, ``?``, ``[`` or ``/``, first match
        wins (``{"**/bias": False, "**": True}``), where a leaf no pattern matches and a pattern
        that takes no leaf are errors (a trailing catch-all ``"**"`` may take none); or a list
        of path patterns, True for the leaves they match and False for the rest. On packed
        params (:func:`optix.pack`) patterns see the original paths, and every leaf of a buffer
        must get the same flag. See :mod:`optix._paths` for the rules.
      mask_is_tree: force ``mask`` to be read as a tree (True) or called as a function (False);
        by default a callable with pytree leaves is a tree and any other callable a function.

    Returns:
      A :class:`GradientTransformation` whose state is ``MaskedState(inner_state)``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
      >>> tx = optix.masked(optix.sgd(0.1), {"w": True, "b": False})
      >>> updates, state = tx.update({"w": jnp.ones(2), "b": jnp.ones(2)}, tx.init(params))
      >>> updates["w"], updates["b"]
      (Array([-0.1, -0.1], dtype=float32), Array([1., 1.], dtype=float32))
    """
    return _masked_core(inner, mask, mask_is_tree, "masked", freeze=False)


def freeze(
    labels_or_mask: Any, inner: GradientTransformation | None = None
) -> GradientTransformation:
    r"""Give frozen leaves exactly zero updates and no state; optimize the rest with ``inner``.

    .. math:: u_i = \begin{cases} 0 & \text{frozen}_i \\ \mathrm{inner}(g)_i & \text{otherwise} \end{cases}

    Put the optimizer inside, not after: ``chain(freeze(mask), adamw(...))`` would give frozen
    leaves zero gradients but AdamW would still apply weight decay to them (so they would move)
    and still keep moment buffers for them. ``freeze(mask, adamw(...))`` does neither: ``inner``
    sees frozen leaves as ``None``, like :func:`masked` with the mask inverted.

    Args:
      labels_or_mask: which leaves are frozen. A path pattern or a list of them (``["encoder/**",
        "**/embedding"]``); a dict of path patterns to bools, first match wins, where a leaf no
        pattern matches is trainable; a pytree of bools, True for frozen, that mirrors the params
        or a prefix of them (``{"encoder": True}``: a bool at a subtree covers every leaf below
        it, and the leaves under keys it leaves out are trainable); or a function ``params ->
        such a pytree``. A pattern that takes no leaf is an error.
      inner: the optimizer for the trainable leaves; default :func:`optix.identity`.

    Returns:
      A :class:`GradientTransformation` whose state is ``MaskedState(inner_state)``, where
      ``inner_state`` covers the trainable leaves only.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"encoder": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
      >>> tx = optix.freeze(["encoder/**"], optix.adam(0.1))
      >>> grads = {"encoder": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> updates["encoder"]["w"], updates["head"]["w"]
      (Array([0., 0.], dtype=float32), Array([-0.1, -0.1], dtype=float32))
    """
    inner = identity() if inner is None else inner
    return _masked_core(inner, labels_or_mask, None, "freeze", freeze=True)
