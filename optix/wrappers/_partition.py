"""Per-layer optimizers: a different transform for each labelled group of params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax

from optix import _paths
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix.wrappers._masked import check_is_tree
from optix.wrappers._masked import inner_leaves
from optix.wrappers._masked import leaf_values
from optix.wrappers._masked import select


def _is_none(x: Any) -> bool:
    return x is None


def _check_label(path: str, label: Any) -> str:
    if not isinstance(label, str):
        raise TypeError(
            f"`partition` labels: the label of leaf '{path}' is {label!r}; labels must be strings "
            "(the keys of `transforms`)"
        )
    return label


class PartitionState(NamedTuple):
    """State of :func:`partition`: one inner state per label."""

    inner_states: dict[str, OptState]  # each label's transform state, built on its leaves only


def partition(
    transforms: Mapping[str, GradientTransformation],
    labels: Any,
    *,
    labels_are_tree: bool | None = None,
) -> GradientTransformation:
    r"""Optimize each labelled group of params with its own transform (per-layer optimizers).

    .. math:: u_i = \mathrm{transforms}[\ell_i](g_{\{j : \ell_j = \ell_i\}})_i

    Every leaf carries one label, and every label names one transform. The transform for label
    ``l`` sees the updates and params with the leaves of all other labels replaced by ``None``:
    it keeps state only for its own leaves, and its tree-wide quantities (a global norm, say)
    cover only them. Its outputs are merged back into the full structure.

    Labels are resolved at ``init`` from the params and at ``update`` from ``params`` when given,
    else from ``updates`` (a function spec is called on that tree); both must give the same
    labels, so a label function should depend on structure and shapes only. The state keeps each
    transform's hyperparameters reachable by label: ``optix.get_hyperparams(state)`` lists
    ``inner_states/slow/1/learning_rate``, and ``optix.set_hyperparams(state,
    **{"slow/learning_rate": 1e-4})`` sets one.

    Args:
      transforms: a dict ``label -> transform``; labels are non-empty strings without ``/``.
      labels: the label of each leaf. One of: a pytree of strings that mirrors the params or a
        prefix of them, where a label at a subtree covers every leaf below it, as in optax
        (``{"encoder": "slow", "head": {"w": "decay", "b": "plain"}}``); a function ``params ->
        such a pytree``; or a dict of path patterns to labels, recognised by a key holding
        ``*``, ``?``, ``[`` or ``/``, first match wins (``{"encoder/**": "slow", "**/bias":
        "no_decay", "**": "default"}``). A leaf no pattern matches, a pattern that takes no leaf
        (except a trailing ``"**"``), a label with no transform and a transform with no leaf
        are errors. See :mod:`optix._paths` for the rules. Paths start at the tree's root: for
        flax ``variables`` write ``"params/encoder/**"`` (or ``"**/encoder/**"``); a flax nnx
        ``Param`` adds no segment (``layers/0/bias``, at ``init`` and ``update`` alike). On
        packed params patterns see the original paths, and all leaves of a buffer must share
        a label (pack each group on its own).
      labels_are_tree: force ``labels`` to be read as a tree (True) or called as a function
        (False); by default a callable with pytree leaves (an equinox module) is a tree.

    Returns:
      A :class:`GradientTransformation` whose state is ``PartitionState(inner_states)``, with
      ``inner_states = {label: state of transforms[label]}``.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"encoder": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2), "b": jnp.ones(2)}}
      >>> tx = optix.partition(
      ...     {"slow": optix.sgd(0.01), "decay": optix.adamw(0.1, weight_decay=0.5),
      ...      "plain": optix.adam(0.1)},
      ...     {"encoder/**": "slow", "**/b": "plain", "**": "decay"},
      ... )
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
      >>> updates["encoder"]["w"], updates["head"]["b"], updates["head"]["w"]
      (Array([-0.01, -0.01], dtype=float32), Array([-0.1, -0.1], dtype=float32), Array([-0.15, -0.15], dtype=float32))
      >>> state = optix.set_hyperparams(state, **{"slow/learning_rate": 1e-3})

    Reference: optax's ``multi_transform`` and torch.optim's parameter groups serve the same need.
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise TypeError(
            "`transforms` must be a non-empty dict from label to gradient transformation, got "
            f"{transforms!r}"
        )
    for label, tx in transforms.items():
        if not isinstance(label, str) or not label or "/" in label:
            raise ValueError(
                f"`partition` labels must be non-empty strings without '/', got {label!r}"
            )
        check_transform(tx, f"`transforms[{label!r}]`")
    if labels is None:
        raise TypeError("`partition` needs `labels`, got None")
    check_is_tree("labels_are_tree", labels_are_tree)
    names = list(transforms)
    calls = {label: caller(tx) for label, tx in transforms.items()}
    what = "`partition` labels"

    def leaf_labels(tree):
        values = leaf_values(labels, tree, what, is_tree=labels_are_tree, check=_check_label)
        for path, label in zip(_paths.leaf_paths(tree), values, strict=True):
            if label not in transforms:
                raise ValueError(
                    f"{what}: leaf '{path}' has label {label!r}, which no "
                    f"transform has; `transforms` has {names}"
                )
        unused = [label for label in names if label not in set(values)]
        if unused and jax.tree.leaves(tree, is_leaf=_is_none):  # not optax's placeholder
            raise ValueError(
                f"{what}: no leaf has the label {unused[0]!r}, so its transform has nothing to "
                "optimize; remove it from `transforms` or fix the labels"
            )
        return values

    def init(params):
        values = leaf_labels(params)
        return PartitionState(
            {
                label: transforms[label].init(select(params, [v == label for v in values]))
                for label in names
            }
        )

    def update(updates, state, params=None, **extra):
        if not (
            isinstance(state, PartitionState)
            and isinstance(state.inner_states, dict)
            and sorted(state.inner_states) == sorted(names)
        ):
            raise ValueError(
                f"`partition` expected a PartitionState with inner states for {sorted(names)}; "
                "was it built by this transform's init?"
            )
        if params is not None:
            _validate.check_matches_params(updates, params)
        values = leaf_labels(updates if params is None else params)
        leaves, treedef = jax.tree.flatten(updates)
        merged = list(leaves)
        new_states = {}
        for label in names:
            keep = [v == label for v in values]
            sub_updates = select(updates, keep)
            sub_params = None if params is None else select(params, keep)
            new, new_states[label] = calls[label](
                sub_updates, state.inner_states[label], sub_params, extra
            )
            new_leaves = inner_leaves(new, sub_updates, treedef, f"transform {label!r}")
            for i, k in enumerate(keep):
                if k:
                    merged[i] = new_leaves[i]
        return treedef.unflatten(merged), PartitionState(new_states)

    return GradientTransformation(init, update)
