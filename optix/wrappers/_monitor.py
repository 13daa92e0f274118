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
# Every name ``metrics=`` takes, in the order :func:`metrics` lists them.
METRIC_NAMES = (*_NAMES, "clipped_grad_norm")


class MonitorState(NamedTuple):
    """State of :func:`monitor`: the inner state and the metrics of the most recent step.

    A metric left out of ``monitor``'s ``metrics`` is ``None`` here (and absent from
    :func:`metrics`); so are the per-group norms of a kind left out.

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
    grad_norm: jax.Array | None
    update_norm: jax.Array | None
    param_norm: jax.Array | None
    update_param_ratio: jax.Array | None
    skipped_steps: jax.Array | None
    group_grad_norms: dict[str, jax.Array] | None
    group_update_norms: dict[str, jax.Array] | None
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


def _check_metrics(metrics: Any, clip: Any, groups: dict) -> tuple[str, ...]:
    """The metrics to record, in :data:`METRIC_NAMES` order, or an error naming what is wrong."""
    if metrics is None:
        return tuple(n for n in METRIC_NAMES if clip is not None or n != "clipped_grad_norm")
    names = (metrics,) if isinstance(metrics, str) else metrics
    if not isinstance(names, list | tuple | set | frozenset) or not all(
        isinstance(n, str) for n in names
    ):
        raise TypeError(f"`metrics` must be a metric name or a list of them, got {metrics!r}")
    if not names:
        raise ValueError(f"`metrics` is empty: name at least one of {list(METRIC_NAMES)}")
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(
            f"`metrics`: unknown metric name(s) {unknown}; the names are {list(METRIC_NAMES)}"
        )
    if "clipped_grad_norm" in names and clip is None:
        raise ValueError("`metrics` asks for 'clipped_grad_norm' but `clip` is None")
    if groups and not {"grad_norm", "update_norm"} & set(names):
        raise ValueError(
            "`groups` is given but `metrics` holds neither 'grad_norm' nor 'update_norm', the "
            "norms recorded per group"
        )
    return tuple(n for n in METRIC_NAMES if n in names)


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


def _sq_norms(tree: Any) -> list[jax.Array]:
    """Each leaf's ``sum |x_i|^2`` (``_tree.sq_norm``), read once for the global norm and
    every group's.

    The leaves pass an optimization barrier first (an identity on their values, free for arrays
    already in memory). Without it XLA:CPU merges the norm's ``g * g`` with an optimizer's own
    ``g * g`` (Adam's second moment), and a product with two readers is written to a fresh
    buffer the size of the tree on every step instead of being summed where it is computed."""
    leaves = jax.lax.optimization_barrier(jax.tree.leaves(tree))
    return [_tree.sq_norm(x) for x in leaves]


def _norm(sq_norms: list[jax.Array], mask: list[bool] | None = None) -> jax.Array:
    picked = sq_norms if mask is None else [s for s, m in zip(sq_norms, mask, strict=True) if m]
    return _tree.norm_of_sq_norms(picked).astype(_validate.stored_dtype())


def _after(norm: jax.Array, updates: Any) -> Any:
    """``updates`` unchanged (bit for bit: ``u - (+0) = u`` for every ``u``, ``-0`` and NaN
    included), but computed after ``norm``.

    The dependency is there for XLA: a step that donates its params writes the new params over
    the old ones, and a norm of the old params that nothing orders before that write makes XLA
    copy every param leaf first (a fresh buffer the size of the params on every step)."""
    zero = jnp.where(jnp.isfinite(norm), norm, 0) * 0

    def keep(u: Any) -> Any:
        dtype = getattr(u, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.inexact):
            return u - zero.astype(dtype)
        return u

    return jax.tree.map(keep, updates)


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
    metrics: Any = None,
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

    Cost. Each norm reads its tree once more; no metric changes the updates (they are ``tx``'s,
    bit for bit). ``skipped_steps`` only reads counters, ``grad_norm`` and ``param_norm`` one more
    read of the gradient and of the params, and group norms reuse the leaves' sums of squares.
    ``update_norm`` (and ``update_param_ratio``, which needs it) costs most where the compiler
    does not fuse a reduction with the elementwise work that produces its input: an optimizer's
    updates are otherwise computed inside ``apply_updates``'s loop and never stored, and their
    norm makes XLA:CPU write them to a buffer of their own on every step (and copy the params
    when the step donates them). Leave it out with ``metrics`` where it costs too much;
    ``benchmarks/monitor_overhead.py`` measures each choice on a 500-leaf AdamW step.

    Args:
      tx: the transform to watch (usually a whole optimizer).
      groups: ``None``, or a dict ``{name: pattern or list of patterns}`` of leaf groups whose
        gradient and update norms are recorded too. Patterns are path patterns
        (``"encoder/**"``, ``"**/bias"``; see :func:`optix.masked`); a leaf may be in several
        groups; a pattern that matches no leaf is an error naming it.
      clip: ``None``, or a gradient transform run before ``tx`` (a clipping), whose output's
        norm is recorded as ``clipped_grad_norm``.
      metrics: ``None`` (the default: every metric, ``clipped_grad_norm`` with a ``clip``), or
        the name, or a list of the names, of the metrics to record: ``"grad_norm"``,
        ``"update_norm"``, ``"param_norm"``, ``"update_param_ratio"``, ``"skipped_steps"``,
        ``"clipped_grad_norm"``. The others are ``None`` in the state and absent from
        :func:`optix.metrics`; per group, the gradient's and the updates' norms follow
        ``"grad_norm"`` and ``"update_norm"``. An unknown name is an error naming it, as is
        ``"clipped_grad_norm"`` without ``clip``, and ``groups`` with neither group norm.

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
      >>> tx = optix.monitor(optix.sgd(0.1), metrics=("grad_norm", "skipped_steps"))
      >>> _, state = tx.update(grads, tx.init(params), params)
      >>> sorted(optix.metrics(state))
      ['grad_norm', 'skipped_steps']

    Reference: the ratio of update to parameter norm is the quantity LARS controls per layer:
    You, Gitman & Ginsburg, `Large batch training of convolutional networks
    <https://arxiv.org/abs/1708.03888>`_, 2017.
    """
    check_transform(tx, "`tx`")
    if clip is not None:
        check_transform(clip, "`clip`")
    checked = _check_groups(groups)
    wanted = _check_metrics(metrics, clip, checked)
    on = set(wanted)
    need_grad = "grad_norm" in on
    need_update = bool({"update_norm", "update_param_ratio"} & on)
    need_param = bool({"param_norm", "update_param_ratio"} & on)
    call = caller(tx)
    call_clip = None if clip is None else caller(clip)
    dtype = _validate.stored_dtype()

    def init(params):
        _group_masks(checked, params)  # a pattern that matches nothing fails here, not in jit

        def zero(name):  # a buffer of its own for each field: a donated state never repeats one
            return jnp.zeros([], dtype) if name in on else None

        def groups_of(name):
            return {group: jnp.zeros([], dtype) for group in checked} if name in on else None

        return MonitorState(
            tx.init(params),
            zero("grad_norm"),
            zero("update_norm"),
            zero("param_norm"),
            zero("update_param_ratio"),
            jnp.zeros([], jnp.int32) if "skipped_steps" in on else None,
            groups_of("grad_norm"),
            groups_of("update_norm"),
            None if clip is None else clip.init(params),
            zero("clipped_grad_norm") if clip is not None else None,
        )

    def update(updates, state, params=None, **extra):
        grads, clip_state, clipped_norm = updates, state.clip_state, state.clipped_grad_norm
        if call_clip is not None:
            grads, clip_state = call_clip(updates, state.clip_state, params, extra)
            if "clipped_grad_norm" in on:
                clipped_norm = _norm(_sq_norms(grads))
        masks = _group_masks(checked, updates)  # the updates keep the gradient's tree
        got: dict[str, Any] = {}  # metric -> value; group norms under "grad_norm/" etc.
        if need_grad:
            sq = _sq_norms(updates)
            got["grad_norm"] = _norm(sq)
            got["grad_norm/"] = {name: _norm(sq, mask) for name, mask in masks.items()}
        if need_param:
            got["param_norm"] = (
                jnp.full([], jnp.nan, dtype) if params is None else _norm(_sq_norms(params))
            )
        new_updates, inner_state = call(grads, state.inner_state, params, extra)
        if need_update:
            sq = _sq_norms(new_updates)
            got["update_norm"] = _norm(sq)
            got["update_norm/"] = {name: _norm(sq, mask) for name, mask in masks.items()}
            if need_param:
                got["update_param_ratio"] = got["update_norm"] / got["param_norm"]
        elif need_param and params is not None:
            # Only the params' norm reads the old params: order it before the step's write.
            # (With the updates' norm, XLA:CPU computes the updates from the old params in a
            # kernel of their own and copies the params anyway; the ordering then costs more.)
            new_updates = _after(got["param_norm"], new_updates)

        def kept(name: str) -> Any:
            return got[name] if name in on else None

        return new_updates, MonitorState(
            inner_state,
            kept("grad_norm"),
            kept("update_norm"),
            kept("param_norm"),
            kept("update_param_ratio"),
            _skipped(inner_state) if "skipped_steps" in on else None,
            got["grad_norm/"] if "grad_norm" in on else None,
            got["update_norm/"] if "update_norm" in on else None,
            clip_state,
            clipped_norm,
        )

    return GradientTransformation(init, update)


def metrics(state: Any) -> dict[str, jax.Array]:
    r"""The metrics recorded by every :func:`optix.monitor` inside a (nested) optimizer state.

    Names: ``grad_norm``, ``update_norm``, ``param_norm``, ``update_param_ratio``,
    ``skipped_steps``, ``clipped_grad_norm`` (with a ``clip``), and for each group
    ``grad_norm/<group>`` and ``update_norm/<group>``, each only where the monitor's ``metrics``
    records it (see :class:`MonitorState` for their definitions, :math:`\|g\|, \|u\|,
    \|\theta\|, \|u\|/\|\theta\|`). With several monitors in one state, each name is prefixed by the path of
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
        for name in METRIC_NAMES:
            if getattr(node, name) is not None:
                out[prefix + name] = getattr(node, name)
        for group, value in (node.group_grad_norms or {}).items():
            out[f"{prefix}grad_norm/{group}"] = value
        for group, value in (node.group_update_norms or {}).items():
            out[f"{prefix}update_norm/{group}"] = value
    return out
