"""What every Muon-family optimizer (:func:`optix.muon`, :func:`optix.normuon`) shares around
its matrix rule: the check that each leaf it gets is a matrix, the ``"muon"``/``"adam"`` label of
each leaf, and the alias tail that sends the matrices to the Muon-family transform and the rest to
AdamW.

Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
<https://kellerjordan.github.io/posts/muon/>`_, 2024 (AdamW for the embeddings, heads and
vectors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from optix import _keypath
from optix import _paths
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._chain import chain
from optix.optimizers._adam import scale_by_adam
from optix.transforms._matrix import decayed_weights
from optix.transforms._matrix_spec import layout_tree
from optix.transforms._matrix_spec import leaf_specs
from optix.transforms._matrix_spec import resolve_layout
from optix.transforms._scale import scale_lr
from optix.wrappers._partition import PartitionState
from optix.wrappers._partition import partition


def matrix_layouts(params: Any, what: str, matrix_spec: Any, out_in: bool) -> Any:
    """The layout of each leaf (a tree), after checking that every leaf is a float matrix."""
    _validate.check_float_leaves(params, f"{what} params")
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if leaf.ndim < 2:
            raise ValueError(
                f"{what} needs leaves with ndim >= 2; leaf "
                f"'{_keypath.path_str(path)}' has shape {leaf.shape}. Use `optix.muon`, which "
                "sends such leaves to AdamW."
            )
    layouts = layout_tree(matrix_spec, params, what, out_in=out_in)
    flat = jax.tree.structure(params).flatten_up_to(layouts)
    for (path, leaf), lay in zip(jax.tree_util.tree_leaves_with_path(params), flat, strict=True):
        if lay is None and leaf.size:
            raise ValueError(
                f"{what}: the MatrixSpec of leaf '{_keypath.path_str(path)}' of shape "
                f"{leaf.shape} leaves no matrix (its batch axes leave fewer than two axes); "
                "label it 'adam' (`optix.muon(..., labels=...)`) or name its fan axes"
            )
    return layouts


_MUON_LABELS = ("muon", "adam")


def muon_labels(
    tree: Any, labels: Any = None, matrix_spec: Any = None, out_in: bool = False
) -> Any:
    """The ``"muon"``/``"adam"`` label of each leaf of ``tree``, as a tree shaped like it.

    By default a leaf is ``"muon"`` when it holds a matrix and ``"adam"`` otherwise: a leaf
    ``matrix_spec`` leaves out holds one when ``ndim >= 2``, a leaf it gives an
    :class:`optix.MatrixSpec` when its spec leaves a matrix (the biases ``(L, d)`` of a layer
    stack under ``MatrixSpec(batch_axes=(0,))`` hold none, so they are ``"adam"``). ``labels``
    overrides this: a tree of labels, a function ``params -> tree of labels``, or a dict of path
    patterns (first match wins; a leaf no pattern matches keeps the default rule), for example
    ``{"embed/**": "adam", "head/**": "adam"}``. A leaf labelled ``"muon"`` that holds no matrix
    is an error naming it.
    """
    pairs = jax.tree_util.tree_leaves_with_path(tree)
    specs = leaf_specs(matrix_spec, tree, "`muon`")

    def holds_matrix(path: str, leaf: Any, spec: Any) -> bool:
        if spec is None:
            return len(leaf.shape) >= 2
        return resolve_layout(spec, tuple(leaf.shape), path, "`muon`", out_in=out_in) is not None

    rule = ["muon" if holds_matrix(*s) else "adam" for s in specs]
    if labels is None:
        values = rule
    else:  # leaves no pattern matches (or a partial tree leaves out) keep the default rule
        unset = object()
        given = _paths.resolve_leaves(labels, tree, "`muon` labels", default=lambda _: unset)
        values = [r if v is unset else v for v, r in zip(given, rule, strict=True)]
    for (path, leaf), value, r in zip(pairs, values, rule, strict=True):
        if value not in _MUON_LABELS:
            raise ValueError(
                f"`muon` labels: leaf '{_keypath.path_str(path)}' has label {value!r}; "
                "labels must be 'muon' or 'adam'"
            )
        if value == "muon" and len(leaf.shape) < 2:
            raise ValueError(
                f"`muon` labels: leaf '{_keypath.path_str(path)}' of shape {leaf.shape} is "
                "labelled 'muon', but Muon needs ndim >= 2; label it 'adam'"
            )
        if value == "muon" and r == "adam":
            raise ValueError(
                f"`muon` labels: leaf '{_keypath.path_str(path)}' of shape {leaf.shape} is "
                "labelled 'muon', but its MatrixSpec leaves no matrix (its batch axes leave "
                "fewer than two axes); label it 'adam' or name its fan axes"
            )
    return jax.tree.unflatten(jax.tree.structure(tree), values)


def _partition_present(
    transforms: dict[str, GradientTransformation], labels_of: Callable[[Any], Any]
) -> GradientTransformation:
    """:func:`partition` over the labels present in the tree, with a state for every label.

    A label no leaf carries (a model without matrices, or with nothing but matrices, or an empty
    tree) keeps the state its transform builds on a tree of ``None`` and is left alone by
    ``update``. So the state's structure depends on the tree's structure alone, never on which
    labels its leaves take: ``optax.tree.map_params`` (whose stand-in params have no leaves)
    finds the params in it."""

    def split(tree):
        labels = labels_of(tree)
        present = set(jax.tree.leaves(labels))
        inner = {k: v for k, v in transforms.items() if k in present}
        return (partition(inner, labels) if inner else None), present

    def init(params):
        params = _tree.as_arrays(params)
        present_tx, present = split(params)
        states = {} if present_tx is None else dict(present_tx.init(params).inner_states)
        nothing = jax.tree.map(lambda _: None, params)
        for label, tx in transforms.items():
            if label not in present:
                states[label] = tx.init(nothing)
        return PartitionState(states)

    def update(updates, state, params=None, **extra):
        if not (
            isinstance(state, PartitionState)
            and isinstance(state.inner_states, dict)
            and sorted(state.inner_states) == sorted(transforms)
        ):
            raise ValueError(
                f"`muon` expected a PartitionState with inner states for {sorted(transforms)}; "
                "was it built by this optimizer's init?"
            )
        present_tx, present = split(updates if params is None else params)
        if present_tx is None:
            return updates, state
        inner = PartitionState({k: s for k, s in state.inner_states.items() if k in present})
        updates, inner = present_tx.update(updates, inner, params, **extra)
        return updates, PartitionState({**state.inner_states, **inner.inner_states})

    return GradientTransformation(init, update)


def matrices_and_the_rest(
    matrix_tx: list[GradientTransformation],
    labels: Any,
    learning_rate: Any,
    mask: Any,
    mu_dtype: Any,
    adam: tuple[Any, Any, Any, Any, Any],
    matrix_spec: Any = None,
    out_in: bool = False,
) -> GradientTransformation:
    """``matrix_tx`` on the leaves :func:`muon_labels` calls ``"muon"``, AdamW on the others: the
    alias of every Muon-family optimizer.

    ``adam`` is ``(learning_rate, b1, b2, eps, weight_decay)`` of the AdamW branch (its decay
    masked by ``mask``, its moments in ``mu_dtype``). Each branch is scaled by ``learning_rate``,
    the AdamW branch by its own rate when that is not None. ``matrix_spec`` and ``out_in`` (the
    matrix transform's) decide the default label of each leaf."""
    adam_learning_rate, b1, b2, eps, weight_decay = adam
    adam_tx = [scale_by_adam(b1, b2, eps, mu_dtype=mu_dtype), *decayed_weights(weight_decay, mask)]
    labels_of = lambda tree: muon_labels(tree, labels, matrix_spec, out_in)  # noqa: E731
    if adam_learning_rate is None:
        branches = {"muon": chain(*matrix_tx), "adam": chain(*adam_tx)}
        return chain(_partition_present(branches, labels_of), scale_lr(learning_rate))
    branches = {
        "muon": chain(*matrix_tx, scale_lr(learning_rate)),
        "adam": chain(*adam_tx, scale_lr(adam_learning_rate)),
    }
    return _partition_present(branches, labels_of)
