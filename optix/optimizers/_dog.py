r"""DoG and DoWG: SGD whose step size is a distance travelled over accumulated gradient norms.

Both keep the initial params and set the step size from the largest distance from them so far,
divided by a running sum of squared gradient norms (DoWG weights that sum by the distance). The
norms and sums run over all leaves together, in the hyperparameter precision (float32, or
float64 under x64). Both produce a *direction* (the scaled gradient); :func:`optix.scale_lr`
makes the step, so ``learning_rate`` multiplies the estimated step size (keep it 1, or use a
schedule that starts at 1).

Reference: Ivgi, Hinder & Carmon, `DoG is SGD's best friend: a parameter-free dynamic step size
schedule <https://arxiv.org/abs/2302.12022>`_, ICML 2023; Khaled, Mishchenko & Jin, `DoWG
unleashed: an efficient universal parameter-free gradient descent method
<https://arxiv.org/abs/2305.16284>`_, NeurIPS 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._chain import chain
from optix._fusable import mark_elementwise
from optix._hyperparams import hyperparam_dtype
from optix._hyperparams import register_rules
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import PositiveOrNone
from optix.toolkit import checked
from optix.toolkit import leafwise
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None
_INIT_STEPS = ("distance", "learning_rate", "heuristic")


def _sum_sq(tree: Any) -> jax.Array:
    """``sum over leaves of |x|^2``, accumulated in the hyperparameter precision."""
    dt = hyperparam_dtype()
    with jax.numpy_dtype_promotion("standard"):
        parts = [jnp.sum(_tree.abs_sq(_tree.upcast(x))).astype(dt) for x in jax.tree.leaves(tree)]
    return sum(parts, jnp.zeros([], dt))


def _sq_dist(params0: Params, params: Params) -> jax.Array:
    """``||x_t - x_0||^2`` over all leaves."""
    return _sum_sq(
        _tree.map_leaves(lambda p0, p: _tree.upcast(p0) - _tree.upcast(p), params0, params)
    )


def _distance_over_gradients(
    name: str, state_cls: type, spec: Hyperparams, step: Callable[..., tuple[Any, ...]]
) -> GradientTransformation:
    """The transform DoG and DoWG share: the state is ``(hyperparams, params0, a, b)`` with ``a``
    and ``b`` scalars, and ``step(h, state, updates, params)`` returns ``(eta, new_a, new_b)``;
    the update is ``eta * g``."""

    def init(params):
        _validate.check_float_leaves(params, f"`{name}` params")
        zeros = (jnp.zeros([], hyperparam_dtype()) for _ in range(2))  # separate buffers (donation)
        return state_cls(spec.init(), jax.tree.map(jnp.copy, params), *zeros)

    def update(updates, state, params=None, **extra):
        del extra
        _validate.require_params(params, name)
        _validate.check_float_leaves(updates, f"`{name}` updates")
        _validate.check_same_structure(updates, state.params0, "updates", f"the `{name}` state")
        _validate.check_matches_params(updates, params)
        h, hyperparams = spec.step(state.hyperparams)
        eta, *scalars = step(h, state, updates, params)
        return leafwise(lambda g: eta * g, updates), state_cls(hyperparams, state.params0, *scalars)

    # Its norms run over all leaves at once, so packing leaves end to end changes nothing.
    return mark_elementwise(GradientTransformation(init, update))


class ScaleByDogState(NamedTuple):
    """State of :func:`scale_by_dog`: the initial params and the two running quantities."""

    hyperparams: HyperparamState  # init_step, eps; count is t
    params0: Params  # x_0
    max_dist: jax.Array  # r-bar_{t-1} = max(r_eps, max_{k<t} ||x_k - x_0||)
    sum_sq_grads: jax.Array  # G_{t-1} = sum_{k<t} ||g_k||^2


@transform(ScaleByDogState)
def scale_by_dog(
    init_step: tuple[str, ArrayLike] = ("heuristic", 1e-6),
    eps: NonNegative = 1e-8,
) -> GradientTransformation:
    r"""Scale the gradient by the DoG step size: a direction, ``u_t = eta_t g_t``.

    .. math::
        \bar r_t = \max\bigl(r_\epsilon, \max_{k \le t} \lVert x_k - x_0 \rVert\bigr), \quad
        G_t = \sum_{k \le t} \lVert g_k \rVert^2, \quad
        \eta_t = \frac{\bar r_t}{\sqrt{G_t + \epsilon}}, \quad u_t = \eta_t g_t

    with the norms over all leaves together and ``x_0`` the params ``init`` sees. ``u_t`` points
    uphill like the gradient; :func:`optix.scale_lr` turns it into the step (see :func:`optix.dog`
    for ``init_step``, which sets ``r_eps`` or the first ``eta``). ``update`` needs ``params``.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_dog(("distance", 1e-4)), optix.scale_lr(1.0))

    Reference: Ivgi, Hinder & Carmon, `DoG is SGD's best friend: a parameter-free dynamic step
    size schedule <https://arxiv.org/abs/2302.12022>`_, ICML 2023.
    """
    if not (isinstance(init_step, tuple) and len(init_step) == 2 and init_step[0] in _INIT_STEPS):
        raise ValueError(
            f"`init_step` must be a pair (kind, value) with kind one of {_INIT_STEPS}, "
            f"got {init_step!r}"
        )
    kind, value = init_step
    if callable(value):
        raise TypeError("`init_step` holds a number, not a schedule")
    _validate.check_positive("init_step", value)

    def step(h, state, updates, params):
        dist = _tree.sqrt_flat_at_zero(_sq_dist(state.params0, params))
        if kind == "distance":
            r_eps = h.init_step
        elif kind == "heuristic":
            r_eps = h.init_step * (1 + jnp.sqrt(_sum_sq(state.params0)))
        else:
            r_eps = jnp.zeros_like(dist)
        max_dist = jnp.maximum(jnp.maximum(state.max_dist, dist), r_eps)
        sum_sq_grads = state.sum_sq_grads + _sum_sq(updates)
        eta = max_dist / jnp.sqrt(sum_sq_grads + h.eps)
        if kind == "learning_rate":
            eta = jnp.where(h.t == 1, h.init_step, eta)
        return eta, max_dist, sum_sq_grads

    return _distance_over_gradients(
        "scale_by_dog", ScaleByDogState, Hyperparams(init_step=value, eps=eps), step
    )


# `init_step` is a (kind, value) pair, which no range annotation describes: its value's range is
# registered here for set_hyperparams, and checked above at construction.
register_rules(ScaleByDogState, init_step=_validate.check_positive)


@checked
def dog(
    learning_rate: NonNegative = 1.0,
    init_step: tuple[str, ArrayLike] = ("heuristic", 1e-6),
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""DoG (distance over gradients): SGD with a parameter-free step size.

    .. math::
        \bar r_t = \max\bigl(r_\epsilon, \max_{k \le t} \lVert x_k - x_0 \rVert\bigr), \quad
        G_t = \sum_{k \le t} \lVert g_k \rVert^2, \quad
        x_{t+1} = x_t - \mathrm{lr}_t \frac{\bar r_t}{\sqrt{G_t + \epsilon}}\, g_t

    with the norms over all leaves together. ``init_step`` sets the first step:
    ``("heuristic", a)`` (the default) takes ``r_eps = a (1 + ||x_0||)`` (the paper suggests
    ``a = 1e-6``, or ``1e-4`` with batch normalisation); ``("distance", r)`` takes
    ``r_eps = r``; ``("learning_rate", eta)`` makes the first step size ``eta`` and ``r_eps = 0``.
    It is ``chain(add_decayed_weights(weight_decay, mask), scale_by_dog(init_step, eps),
    scale_lr(learning_rate))``, the same chain as ``optax.contrib.dog``, which it matches; keep
    ``learning_rate`` 1 or a schedule that starts at 1. ``x_0`` are the params that ``init`` sees
    (the heuristic reads their norm). The authors recommend averaging the iterates (see
    :func:`optix.param_ema`).

    Args:
      learning_rate: multiplier of the DoG step (>= 0), or a schedule.
      init_step: ``(kind, value)`` with kind ``"heuristic"``, ``"distance"`` or
        ``"learning_rate"`` and value > 0.
      eps: >= 0, added to the sum of squared gradient norms.
      weight_decay: L2 penalty >= 0 added to the gradient.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.dog(init_step=("learning_rate", 0.1))  # the first step size is 0.1
      >>> params = jnp.ones(3)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.ones(3), state, params)
      >>> updates
      Array([-0.1, -0.1, -0.1], dtype=float32)

    Reference: Ivgi, Hinder & Carmon, `DoG is SGD's best friend: a parameter-free dynamic step
    size schedule <https://arxiv.org/abs/2302.12022>`_, ICML 2023.
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_dog(init_step, eps),
        scale_lr(learning_rate),
    )


class ScaleByDowgState(NamedTuple):
    """State of :func:`scale_by_dowg`: the initial params and the two running quantities."""

    hyperparams: HyperparamState  # init_estim_sq_dist (or none), eps
    params0: Params  # x_0
    estim_sq_dist: jax.Array  # r-bar^2_{t-1}
    weighted_sum_sq_grads: jax.Array  # v_{t-1} = sum_{k<t} r-bar^2_k ||g_k||^2


@transform(ScaleByDowgState)
def scale_by_dowg(
    init_estim_sq_dist: PositiveOrNone = None,
    eps: NonNegative = 1e-4,
) -> GradientTransformation:
    r"""Scale the gradient by the DoWG step size: a direction, ``u_t = eta_t g_t``.

    .. math::
        \bar r_t^2 = \max\bigl(\bar r_{t-1}^2, \lVert x_t - x_0 \rVert^2\bigr), \quad
        v_t = v_{t-1} + \bar r_t^2 \lVert g_t \rVert^2, \quad
        \eta_t = \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}, \quad u_t = \eta_t g_t

    with ``r-bar_0^2 = init_estim_sq_dist`` (default ``eps``) and the norms over all leaves
    together. ``u_t`` points uphill like the gradient; :func:`optix.scale_lr` turns it into the
    step (:func:`optix.dowg` is that chain). ``update`` needs ``params``.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_dowg(), optix.scale_lr(1.0))

    Reference: Khaled, Mishchenko & Jin, `DoWG unleashed: an efficient universal parameter-free
    gradient descent method <https://arxiv.org/abs/2305.16284>`_, NeurIPS 2023.
    """
    specs: dict[str, Any] = {"eps": eps}
    if init_estim_sq_dist is not None:
        specs["init_estim_sq_dist"] = init_estim_sq_dist

    def step(h, state, updates, params):
        floor = h.init_estim_sq_dist if init_estim_sq_dist is not None else h.eps
        sq_dist = _sq_dist(state.params0, params)
        estim = jnp.maximum(jnp.maximum(state.estim_sq_dist, sq_dist), floor)
        weighted = state.weighted_sum_sq_grads + estim * _sum_sq(updates)
        return estim / (_tree.sqrt_flat_at_zero(weighted) + h.eps), estim, weighted

    return _distance_over_gradients("scale_by_dowg", ScaleByDowgState, Hyperparams(**specs), step)


@checked
def dowg(
    learning_rate: NonNegative = 1.0,
    init_estim_sq_dist: PositiveOrNone = None,
    eps: NonNegative = 1e-4,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""DoWG (distance over weighted gradients): SGD with a parameter-free step size.

    .. math::
        \bar r_t^2 = \max\bigl(\bar r_{t-1}^2, \lVert x_t - x_0 \rVert^2\bigr), \quad
        v_t = v_{t-1} + \bar r_t^2 \lVert g_t \rVert^2, \quad
        x_{t+1} = x_t - \mathrm{lr}_t \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}\, g_t

    with ``r-bar_0^2 = init_estim_sq_dist`` (default ``eps``) and the norms over all leaves
    together. It is ``chain(add_decayed_weights(weight_decay, mask), scale_by_dowg(...),
    scale_lr(learning_rate))``, the same chain as ``optax.contrib.dowg``, which it matches; keep
    ``learning_rate`` 1 or a schedule that starts at 1.

    Args:
      learning_rate: multiplier of the DoWG step (>= 0), or a schedule.
      init_estim_sq_dist: > 0, the initial guess of the squared distance to a solution.
      eps: >= 0, added to the denominator (and the default initial guess).
      weight_decay: L2 penalty >= 0 added to the gradient.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.dowg()
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> params = optix.apply_updates(params, updates)

    Reference: Khaled, Mishchenko & Jin, `DoWG unleashed: an efficient universal parameter-free
    gradient descent method <https://arxiv.org/abs/2305.16284>`_, NeurIPS 2023.
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_lr(learning_rate),
    )
