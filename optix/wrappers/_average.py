"""Averages of the parameter trajectory: an exponential moving average and SWA's equal-weight mean.

Both transforms go last in a chain, after :func:`optix.scale_lr`: they pass the updates through
unchanged and average the params each step produces, ``apply_updates(params, updates)``, as the
training loop will store them (for bf16 params XLA may skip the rounding inside ``jit``, a
difference below bf16's resolution). :func:`averaged_params` reads the average back (it also reads
:func:`~optix.wrappers._lookahead.lookahead`'s slow weights): these are the params to evaluate with.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _keypath
from optix import _paths
from optix import _tree
from optix import _validate
from optix._apply import apply_updates
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._base import Updates
from optix._hyperparams import hyperparam_dtype
from optix._hyperparams import increment
from optix._hyperparams import pure
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import transform
from optix.wrappers._lookahead import LookaheadState


def _copy_like(params: Params, requested: DTypeLike | None) -> Params:
    """A copy of ``params`` in the average's dtype, never the params' own buffers (a jitted step
    donating params and state would otherwise donate one buffer twice)."""
    return jax.tree.map(lambda p: jnp.array(p, _tree.state_dtype(p.dtype, requested)), params)


def _check_step(updates: Updates, params: Params | None, average: Params, transform: str) -> None:
    _validate.require_params(params, transform)
    _validate.check_float_leaves(updates, f"`{transform}` updates")
    _validate.check_matches_params(updates, params)
    _validate.check_same_structure(params, average, "params", f"the `{transform}` state")


class ParamEmaState(NamedTuple):
    """State of :func:`param_ema`: the moving average of the params and its total weight."""

    hyperparams: HyperparamState  # decay; count is the number of updates t
    ema: Params  # the exponential moving average (not debiased), in its average dtype
    weight: jax.Array  # the total weight in ``ema``: 1, or 1 - prod(decay) with debiasing


@transform(ParamEmaState)
def param_ema(
    decay: Beta, *, debias: bool = False, ema_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""Keep an exponential moving average of the params (Polyak averaging); updates pass through.

    .. math::
        \theta_t = \theta_{t-1} + u_t, \qquad
        e_t = \beta e_{t-1} + (1 - \beta) \theta_t, \qquad
        w_t = \beta w_{t-1} + (1 - \beta), \qquad
        \bar\theta_t = e_t / w_t

    ``theta_t`` is computed as :func:`optix.apply_updates` will compute it (rounded to the param's
    dtype), so this transform must come **last** in a chain, after :func:`optix.scale_lr`, and
    ``update`` needs ``params``. Two ways to start:

    - ``debias=False`` (default): ``e_0 = theta_0``, the params at ``init``, and ``w_t = 1``; the
      average starts at the initial params and forgets them at rate ``beta^t``.
    - ``debias=True``: ``e_0 = 0`` and ``w_0 = 0``, so ``bar theta_t`` is the exact weighted mean
      of ``theta_1 .. theta_t`` (``w_t = 1 - beta^t`` for a constant decay; with a schedule,
      ``w_t`` tracks the product of the decays used). Before the first update there is no average.

    Read the average with :func:`averaged_params`. The average is kept in ``ema_dtype``, by
    default at least float32, so bf16 params average without loss.

    Args:
      decay: ``beta`` in [0, 1), or a schedule of the step count (for example a warmup
        ``lambda t: jnp.minimum(0.999, (1 + t) / (10 + t))``).
      debias: start from zero and divide by the accumulated weight, as above.
      ema_dtype: dtype of the average; default: the param's dtype widened to at least float32.

    Returns:
      A transform with state :class:`ParamEmaState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.sgd(0.5), optix.param_ema(0.9))
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> params = optix.apply_updates(params, updates)
      >>> optix.averaged_params(state)["w"]  # 0.9 * 1 + 0.1 * 0.5
      Array([0.95, 0.95], dtype=float32)

    Reference: Polyak & Juditsky, `Acceleration of stochastic approximation by averaging
    <https://doi.org/10.1137/0330046>`_, SIAM J. Control Optim. 1992.
    """
    if not isinstance(debias, bool):
        raise TypeError(f"`debias` must be a bool, got {debias!r}")
    _tree.check_state_dtype("ema_dtype", ema_dtype)
    spec = Hyperparams(decay=decay)

    def init(params):
        _validate.check_float_leaves(params, "`param_ema` params")
        ema = _copy_like(params, ema_dtype)
        if debias:
            ema = jax.tree.map(jnp.zeros_like, ema)
        weight = jnp.asarray(0.0 if debias else 1.0, hyperparam_dtype())
        return ParamEmaState(spec.init(), ema, weight)

    def update(updates, state, params=None, **extra):
        del extra
        _check_step(updates, params, state.ema, "param_ema")
        h, hyperparams = spec.step(state.hyperparams)
        d = h.decay
        stepped = apply_updates(params, updates)

        def leaf(p, e):
            return (d * e + (1 - d) * _tree.upcast(p)).astype(e.dtype)

        ema = _tree.map_leaves(leaf, stepped, state.ema)
        weight = d * state.weight + (1 - d) if debias else state.weight
        return updates, ParamEmaState(hyperparams, ema, weight)

    return GradientTransformation(init, update)


class SwaState(NamedTuple):
    """State of :func:`swa`: the running mean of the params and the counters."""

    mean: Params  # the running mean of the averaged params (zeros before the first one)
    n_averaged: jax.Array  # int32: how many params went into ``mean``
    count: jax.Array  # type: ignore[assignment]  # int32: updates made so far


def swa(
    start_step: int = 0, every_k: int = 1, *, avg_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""Stochastic weight averaging: the equal-weight mean of the params along the trajectory.

    .. math::
        \theta_t = \theta_{t-1} + u_t, \qquad
        \bar\theta = \frac{1}{|S|} \sum_{t \in S} \theta_t, \qquad
        S = \{t \ge 1 : t \ge s, \; (t - s) \bmod k = 0\}

    with ``t`` counting updates (``theta_t`` are the params after the ``t``-th one), ``s =
    start_step`` and ``k = every_k``: with the defaults every step's params are averaged; with
    ``start_step=100, every_k=10`` those after updates 100, 110, 120, ... The initial params
    ``theta_0`` are never included. The mean is updated incrementally, ``mean += (theta_t - mean) /
    n``, in ``avg_dtype``. As :func:`param_ema`, it goes **last** in a chain, after
    :func:`optix.scale_lr`, passes the updates through, and ``update`` needs ``params``.

    Read the mean with :func:`averaged_params`. SWA is meant for a constant or cyclical learning
    rate after a first phase of training; batch-norm statistics must be recomputed for the
    averaged params.

    Args:
      start_step: ``s`` >= 0, the first update whose params may be averaged.
      every_k: ``k`` >= 1, the number of updates between two averaged params.
      avg_dtype: dtype of the mean; default: the param's dtype widened to at least float32.

    Returns:
      A transform with state :class:`SwaState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.sgd(1.0), optix.swa())
      >>> params = jnp.zeros(1)
      >>> state = tx.init(params)
      >>> for _ in range(3):  # params 1, 2, 3
      ...     updates, state = tx.update(-jnp.ones(1), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> optix.averaged_params(state)
      Array([2.], dtype=float32)

    Reference: Izmailov et al., `Averaging weights leads to wider optima and better
    generalization <https://arxiv.org/abs/1803.05407>`_, UAI 2018.
    """
    _validate.check_int("start_step", start_step, minimum=0)
    _validate.check_int("every_k", every_k, minimum=1)
    _tree.check_state_dtype("avg_dtype", avg_dtype)
    int_max = int(jnp.iinfo(jnp.int32).max)
    start = jnp.asarray(min(int(start_step), int_max), jnp.int32)
    period = jnp.asarray(min(int(every_k), int_max), jnp.int32)

    def init(params):
        _validate.check_float_leaves(params, "`swa` params")
        mean = _tree.moments_like(params, avg_dtype, name="avg_dtype")
        return SwaState(mean, jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra):
        del extra
        _check_step(updates, params, state.mean, "swa")
        count = increment(state.count)
        take = (count >= start) & ((count - start) % period == 0)
        n = jnp.where(take, increment(state.n_averaged), state.n_averaged)
        stepped = apply_updates(params, updates)

        def leaf(p, m):
            new = m + (_tree.upcast(p) - m) / jnp.maximum(n, 1).astype(_tree.real_dtype(m.dtype))
            return jnp.where(take, new, m).astype(m.dtype)

        mean = _tree.map_leaves(leaf, stepped, state.mean)
        return updates, SwaState(mean, n, count)

    return GradientTransformation(init, update)


_AVERAGING = (ParamEmaState, SwaState, LookaheadState)


def _find(state: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path parts, node) for every averaging state in ``state``, outermost first."""
    found = []
    flat = jax.tree_util.tree_flatten_with_path(state, is_leaf=lambda x: isinstance(x, _AVERAGING))
    for path, node in flat[0]:
        if isinstance(node, _AVERAGING):
            where = prefix + _keypath.parts(path)
            found.append((where, node))
            if isinstance(node, LookaheadState):
                found.extend(_find(node.inner_state, where + ("inner_state",)))
    return found


def _select(state: Any, path: str | None) -> tuple[str, Any]:
    found = _find(state)
    shown = ["/".join(p) or "<root>" for p, _ in found]
    kinds = ", ".join(f"{s} ({type(n).__name__})" for s, (_, n) in zip(shown, found, strict=True))
    if path is not None:
        address = tuple(p for p in path.split("/") if p and p != "<root>")
        found = [
            (p, n)
            for p, n in found
            if p == address or (address and _paths.address_matches(address, p))
        ]
    if not found:
        if path is None:
            raise ValueError(
                "no averaging state (param_ema, swa or lookahead) in this optimizer state; "
                "add `param_ema(...)` or `swa(...)` last in the chain"
            )
        raise ValueError(f"no averaging state at path {path!r}; the state has: {kinds or 'none'}")
    if len(found) > 1:
        hits = ", ".join("/".join(p) or "<root>" for p, _ in found)
        raise ValueError(
            f"several averaging states in this optimizer state: {hits}; choose one with "
            "`averaged_params(state, params, path=...)`"
        )
    where, node = found[0]
    return "/".join(where) or "<root>", node


def _finish(average: Params, ready: jax.Array, params: Params | None, what: str) -> Params:
    """``average``, or ``params`` where no average exists yet (``ready`` is False)."""
    if params is None:
        if not isinstance(ready, jax.core.Tracer) and not bool(ready):
            raise ValueError(
                f"{what} has not averaged any params yet; pass `params` to "
                "`averaged_params(state, params)` to get them back instead"
            )
        return average
    p_leaves, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
    try:
        a_leaves = treedef.flatten_up_to(average)
    except (ValueError, TypeError):
        _validate.check_same_structure(params, average, "params", what)
        raise

    def pick(p, a):
        if p is None or a is None:  # a leaf nothing averaged (masked out): the param itself
            return p
        return jnp.where(ready, jnp.asarray(a).astype(p.dtype), p)

    return treedef.unflatten([pick(p, a) for p, a in zip(p_leaves, a_leaves, strict=True)])


def averaged_params(
    state: OptState, params: Params | None = None, *, path: str | None = None
) -> Params:
    """The params to evaluate with: the average kept by :func:`param_ema` or :func:`swa`, or the
    slow weights of :func:`~optix.wrappers._lookahead.lookahead`, found anywhere in ``state``.

    The averaging state may sit in a chain, a ``named_chain``, nested tuples or dicts, or a
    wrapper's ``inner_state``. With ``params`` given, the result is cast to the params' dtypes, and
    an average that does not exist yet (``swa`` before its first averaged step, ``param_ema`` with
    ``debias=True`` before its first update) is replaced by ``params``; without ``params``, the
    average comes back in its own dtype (at least float32 by default) and a missing one is an
    error (under ``jit``, where that cannot be checked, zeros come back instead). Leaves that have
    no average (``None`` in the state, as for params masked out of the averaging transform) come
    back as ``None``, or as the given params.

    Args:
      state: an optimizer state holding exactly one averaging state, or several and ``path``.
      params: the current params (optional).
      path: which averaging state to read when there are several: its ``/``-joined path (``"2"``
        in a chain, ``"ema"`` in a named_chain, ``"0/inner_state/1"`` inside a lookahead), or any
        address whose parts occur in that order and whose last part is the path's last part.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.named_chain(adam=optix.adam(1e-2), ema=optix.param_ema(0.99))
      >>> params = {"w": jnp.zeros(3, jnp.bfloat16)}
      >>> optix.averaged_params(tx.init(params), params)["w"].dtype
      dtype(bfloat16)
    """
    if path is not None and not isinstance(path, str):
        raise TypeError(f"`path` must be a string, got {path!r}")
    where, node = _select(pure(state), path)  # nnx.Optimizer state: arrays, not Variables
    what = f"the {type(node).__name__} at '{where}'"
    if isinstance(node, ParamEmaState):
        ready = node.weight > 0
        scale = jnp.where(ready, node.weight, 1)
        average = _tree.map_leaves(lambda e: (e / scale).astype(e.dtype), node.ema)
        return _finish(average, ready, params, what)
    if isinstance(node, SwaState):
        return _finish(node.mean, node.n_averaged > 0, params, what)
    return _finish(node.slow, jnp.asarray(True), params, what)
