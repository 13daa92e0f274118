"""Metrics in state: norms of the gradient, the update and the params, recorded every step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _paths
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import pure
from optix._hyperparams import unbox
from optix._keypath import parts
from optix.wrappers._nonfinite import SkipNonfiniteState
from optix.wrappers._spikes import SkipSpikesState

_NAMES = ("grad_norm", "update_norm", "param_norm", "update_param_ratio", "skipped_steps")


class MonitorState(NamedTuple):
    """State of :func:`monitor`: the inner state and the metrics of the most recent step.

    Attributes:
      inner_state: the wrapped transform's state.
      grad_norm: global L2 norm of the gradient ``monitor`` received (before ``tx``).
      update_norm: global L2 norm of the updates ``tx`` returned.
      param_norm: global L2 norm of the params (NaN when ``update`` got no params).
      update_param_ratio: ``update_norm / param_norm``.
      skipped_steps: int32 number of steps skipped so far by the :func:`optix.skip_nonfinite`
        and :func:`optix.skip_spikes`
        wrappers inside ``tx`` (0 when there is none).
      group_grad_norms: ``{group: norm}``, the gradient's norm over each group's leaves.
      group_update_norms: ``{group: norm}``, the updates' norm over each group's leaves.
      clip_state: the state of ``monitor``'s ``clip`` transform (``None`` without one).
      clipped_grad_norm: global L2 norm of the gradient after ``clip``, the one ``tx`` receives
        (``None`` without ``clip``).

    Before the first update every norm is 0. The norms are float32 (float64 with
    ``jax_enable_x64``).
    """

    inner_state: OptState
    grad_norm: jax.Array
    update_norm: jax.Array
    param_norm: jax.Array
    update_param_ratio: jax.Array
    skipped_steps: jax.Array
    group_grad_norms: dict[str, jax.Array]
    group_update_norms: dict[str, jax.Array]
    clip_state: OptState = None
    clipped_grad_norm: jax.Array | None = None


def _check_groups(groups: Any) -> dict[str, tuple[str, ...]]:
    """``groups`` as ``{name: (pattern, ...)}``, or an error saying what is wrong."""
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise TypeError(
            f"`groups` must be a dict {{name: pattern or list of patterns}}, got "
            f"{type(groups).__name__}"
        )
    out = {}
    for name, spec in groups.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`groups` keys must be non-empty strings, got {name!r}")
        patterns = (spec,) if isinstance(spec, str) else spec
        if (
            not isinstance(patterns, list | tuple)
            or not patterns
            or not all(isinstance(p, str) and p for p in patterns)
        ):
            raise TypeError(
                f"`groups[{name!r}]` must be a path pattern or a non-empty list of them, got "
                f"{spec!r}"
            )
        out[name] = tuple(patterns)
    return out


def _group_masks(groups: dict[str, tuple[str, ...]], tree: Any) -> dict[str, list[bool]]:
    """For each group, whether each leaf of ``tree`` (in flattening order) belongs to it. Each
    pattern is resolved on its own, so one that matches no leaf is an error naming it."""
    n = len(jax.tree.leaves(tree))
    masks = {}
    for name, patterns in groups.items():
        mask = [False] * n
        for pattern in patterns:
            spec = {pattern: True} if pattern == "**" else {pattern: True, "**": False}
            what = f"`monitor` group {name!r}"
            hit = _paths.resolve_leaves(spec, tree, what)
            mask = [a or bool(b) for a, b in zip(mask, hit, strict=True)]
        masks[name] = mask
    return masks


def _group_norms(masks: dict[str, list[bool]], tree: Any) -> dict[str, jax.Array]:
    leaves = jax.tree.leaves(tree)
    dtype = _validate.stored_dtype()
    return {
        name: _tree.global_norm([x for x, m in zip(leaves, mask, strict=True) if m]).astype(dtype)
        for name, mask in masks.items()
    }


def _skipped(inner_state: Any) -> jax.Array:
    """The total of ``skipped`` over the outermost skipping states (:func:`optix.skip_nonfinite`,
    :func:`optix.skip_spikes`) in ``inner_state``."""

    def is_skip(x: Any) -> bool:
        return isinstance(x, SkipNonfiniteState | SkipSpikesState)

    total = jnp.zeros([], jnp.int32)
    for node in jax.tree.leaves(inner_state, is_leaf=is_skip):
        if is_skip(node):
            total = total + unbox(node.skipped).astype(jnp.int32)
    return total


def monitor(
    tx: GradientTransformation,
    *,
    groups: Any = None,
    clip: GradientTransformation | None = None,
) -> GradientTransformation:
    r"""Run ``tx`` and record, in the state, the norms of this step's gradient, updates and params.

    With the gradient :math:`g` that ``monitor`` receives, the updates :math:`u` that ``tx``
    returns and the params :math:`\theta` (all as global norms over every leaf, complex leaves
    by their modulus):

    .. math::
        \|g\| = \Big(\sum_{\text{leaves } l} \sum_i |g_{l,i}|^2\Big)^{1/2}, \quad \|u\|, \quad
        \|\theta\|, \quad \rho = \frac{\|u\|}{\|\theta\|}, \quad
        \|g\|_G = \Big(\sum_{l \in G} \sum_i |g_{l,i}|^2\Big)^{1/2} \ \text{for each group } G

    The state, a :class:`MonitorState`, holds the values of the most recent step (0 before the
    first) as scalar arrays with a fixed structure, so a jitted step never recompiles; read them
    all at once with :func:`optix.metrics`, inside or outside ``jit``. Sums of squares are taken
    leaf by leaf in at least float32, as :func:`optix.clip_by_global_norm` takes them, and each
    leaf's sum is computed once however many norms read it. The ratio :math:`\rho`, the relative
    size of a step, is infinite for zero params (NaN when the updates are zero too). ``params`` is
    optional: called without it, ``param_norm`` and the
    ratio are NaN.

    The gradient's norm is the one received, before anything in ``tx``. To record the norm after
    clipping too, give the clipping as ``clip`` rather than chaining it inside ``tx``:
    ``monitor(adam(1e-3), clip=clip_by_global_norm(1.0))`` runs the same step as
    ``chain(clip_by_global_norm(1.0), adam(1e-3))`` and records both norms (``grad_norm`` and
    ``clipped_grad_norm``); any gradient transform can be ``clip`` (:func:`optix.zclip`,
    :func:`optix.adaptive_grad_clip`). ``skipped_steps`` is the total ``skipped`` count of
    every :func:`optix.skip_nonfinite` and :func:`optix.skip_spikes` inside ``tx`` (0 when ``tx``
    holds none); on a skipped
    step the gradient's norm is recorded as received (NaN or infinite) and the updates' norm is 0.

    Args:
      tx: the transform to watch (usually a whole optimizer).
      groups: ``None``, or a dict ``{name: pattern or list of patterns}`` of leaf groups whose
        gradient and update norms are recorded too. Patterns are path patterns
        (``"encoder/**"``, ``"**/bias"``; see :func:`optix.masked`); a leaf may be in several
        groups; a pattern that matches no leaf is an error naming it.
      clip: ``None``, or a gradient transform run before ``tx`` (a clipping), whose output's
        norm is recorded as ``clipped_grad_norm``.

    Returns:
      A transform with state :class:`MonitorState`. Hyperparameters of ``tx`` stay reachable with
      :func:`optix.get_hyperparams` and :func:`optix.set_hyperparams`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.monitor(optix.sgd(0.1), groups={"bias": "**/b"})
      >>> params = {"w": jnp.ones(2), "b": jnp.zeros(1)}
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])}
      >>> updates, state = tx.update(grads, state, params)
      >>> {k: round(float(v), 4) for k, v in optix.metrics(state).items()}
      {'grad_norm': 13.0, 'update_norm': 1.3, 'param_norm': 1.4142, 'update_param_ratio': 0.9192,
       'skipped_steps': 0.0, 'grad_norm/bias': 12.0, 'update_norm/bias': 1.2}

    Reference: the ratio of update to parameter norm is the quantity LARS controls per layer:
    You, Gitman & Ginsburg, `Large batch training of convolutional networks
    <https://arxiv.org/abs/1708.03888>`_, 2017.
    """
    check_transform(tx, "`tx`")
    if clip is not None:
        check_transform(clip, "`clip`")
    checked = _check_groups(groups)
    call = caller(tx)
    call_clip = None if clip is None else caller(clip)
    dtype = _validate.stored_dtype()

    def init(params):
        _group_masks(checked, params)  # a pattern that matches nothing fails here, not in jit

        def zero():  # a buffer of its own for each field: a donated state never repeats one
            return jnp.zeros([], dtype)

        return MonitorState(
            tx.init(params),
            zero(),
            zero(),
            zero(),
            zero(),
            jnp.zeros([], jnp.int32),
            {name: zero() for name in checked},
            {name: zero() for name in checked},
            None if clip is None else clip.init(params),
            None if clip is None else zero(),
        )

    def update(updates, state, params=None, **extra):
        grads, clip_state, clipped_norm = updates, state.clip_state, state.clipped_grad_norm
        if call_clip is not None:
            grads, clip_state = call_clip(updates, state.clip_state, params, extra)
            clipped_norm = _tree.global_norm(grads).astype(dtype)
        new_updates, inner_state = call(grads, state.inner_state, params, extra)
        masks = _group_masks(checked, updates)  # the updates keep the gradient's tree
        grad_norm = _tree.global_norm(updates).astype(dtype)
        update_norm = _tree.global_norm(new_updates).astype(dtype)
        if params is None:
            param_norm = jnp.full([], jnp.nan, dtype)
        else:
            param_norm = _tree.global_norm(params).astype(dtype)
        return new_updates, MonitorState(
            inner_state,
            grad_norm,
            update_norm,
            param_norm,
            update_norm / param_norm,
            _skipped(inner_state),
            _group_norms(masks, updates),
            _group_norms(masks, new_updates),
            clip_state,
            clipped_norm,
        )

    return GradientTransformation(init, update)


def metrics(state: Any) -> dict[str, jax.Array]:
    r"""The metrics recorded by every :func:`optix.monitor` inside a (nested) optimizer state.

    Names: ``grad_norm``, ``update_norm``, ``param_norm``, ``update_param_ratio``,
    ``skipped_steps``, ``clipped_grad_norm`` (with a ``clip``), and for each group ``grad_norm/<group>`` and ``update_norm/<group>``
    (see :class:`MonitorState` for their definitions, :math:`\|g\|, \|u\|, \|\theta\|,
    \|u\|/\|\theta\|`). With several monitors in one state, each name is prefixed by the path of
    its monitor's state (``"0/grad_norm"``). The values are scalar arrays (``skipped_steps`` is
    int32), also for an ``nnx.Optimizer``'s ``opt_state``, whose arrays sit in ``nnx.Variable``
    wrappers; the function works inside ``jit``. A state without a monitor gives ``{}``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.monitor(optix.adam(1e-3))
      >>> state = tx.init(jnp.zeros(2))
      >>> _, state = tx.update(jnp.array([3.0, 4.0]), state, jnp.zeros(2))
      >>> float(optix.metrics(state)["grad_norm"])
      5.0
    """

    def is_monitor(x: Any) -> bool:
        return isinstance(x, MonitorState)

    found: list[tuple[tuple[str, ...], MonitorState]] = []

    def find(tree: Any, prefix: tuple[str, ...]) -> None:
        pairs, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_monitor)
        for path, node in pairs:
            if is_monitor(node):
                found.append(((*prefix, *parts(path)), node))
                find(node.inner_state, (*prefix, *parts(path), "inner_state"))

    find(state, ())
    out: dict[str, jax.Array] = {}
    for path, node in found:
        prefix = "/".join(path) + "/" if len(found) > 1 and path else ""
        node = pure(node)
        for name in _NAMES:
            out[prefix + name] = getattr(node, name)
        if node.clipped_grad_norm is not None:
            out[prefix + "clipped_grad_norm"] = node.clipped_grad_norm
        for group, value in node.group_grad_norms.items():
            out[f"{prefix}grad_norm/{group}"] = value
        for group, value in node.group_update_norms.items():
            out[f"{prefix}update_norm/{group}"] = value
    return out
