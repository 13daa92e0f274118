r"""MoMo and MoMo-Adam: momentum methods with a Polyak-type step size from a model of the loss.

Both read the current (mini-batch) loss from ``update``'s keyword argument ``value=`` and produce
the final step (their step size is ``min(learning_rate, Polyak step)``, so, like
:func:`optix.prodigy`, they include ``-learning_rate`` and end a chain). Inner products run over
all leaves together, in the hyperparameter precision (float32, or float64 under x64).

Reference: Schaipp, Ohana, Eickenberg, Defazio & Gower, `MoMo: momentum models for adaptive
learning rates <https://arxiv.org/abs/2305.07583>`_, ICML 2024.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Beta
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import transform


def _vdot(a: Any, b: Any) -> jax.Array:
    """``<a, b>`` over all leaves, accumulated in the hyperparameter precision."""
    dt = hyperparam_dtype()
    parts = jax.tree.leaves(
        _tree.map_leaves(lambda x, y: jnp.sum(_tree.upcast(x) * _tree.upcast(y)).astype(dt), a, b)
    )
    return sum(parts, jnp.zeros([], dt))


def _loss_value(extra: dict[str, Any], transform: str) -> jax.Array:
    value = extra.get("value")
    if value is None:
        raise ValueError(
            f"`{transform}` needs the current loss: call `update(grads, state, params, "
            "value=loss)`, for example with `loss, grads = jax.value_and_grad(loss_fn)(params)`."
        )
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(f"`value` must be a scalar loss, got shape {value.shape}")
    return value.astype(hyperparam_dtype())


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den``, and 0 where ``den`` is 0 (no direction: take no step)."""
    positive = den > 0
    return jnp.where(positive, num / jnp.where(positive, den, 1), 0)


def _check_init(params: Any, transform: str) -> None:
    _validate.check_float_leaves(params, f"`{transform}` params")
    _validate.check_real_leaves(params, transform, "its step size uses real inner products")


class MomoState(NamedTuple):
    """State of :func:`momo`: the momentum, the averaged loss model and the lower bound."""

    hyperparams: HyperparamState  # learning_rate, beta, lower_bound, weight_decay; count is k
    mu: Updates  # d_k, EMA of gradients
    loss_avg: jax.Array  # f-bar_k, EMA of losses
    gamma: jax.Array  # EMA of <g_i, x_i>
    lower_bound: jax.Array  # the current estimate of inf f (moves only when adapted)


@transform(MomoState)
def momo(
    learning_rate: NonNegative = 1.0,
    beta: Beta = 0.9,
    lower_bound: Finite = 0.0,
    weight_decay: NonNegative = 0.0,
    *,
    adapt_lower_bound: bool = False,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""MoMo: SGD with momentum and a Polyak step size capped by the learning rate.

    .. math::
        \bar f_k = \beta \bar f_{k-1} + (1-\beta) f_k, \quad
        d_k = \beta d_{k-1} + (1-\beta) g_k, \quad
        \gamma_k = \beta \gamma_{k-1} + (1-\beta) \langle g_k, x_k \rangle,

    .. math::
        \tau_k = \min\Bigl(\alpha_k, \frac{\bigl[(1+\alpha_k\lambda)(\bar f_k - f_* - \gamma_k)
        + \langle d_k, x_k \rangle\bigr]_+}{\lVert d_k \rVert^2}\Bigr), \quad
        x_{k+1} = x_k - \frac{\alpha_k \lambda}{1 + \alpha_k \lambda} x_k - \tau_k d_k

    with ``f_k`` the loss passed as ``value=``, ``f_* = lower_bound``, ``alpha_k`` the learning
    rate, ``lambda = weight_decay``, and the averages started from the first values
    (``beta = 0`` at ``k = 0``). ``tau_k = 0`` while ``d_k = 0``. With
    ``adapt_lower_bound=True`` the bound is re-estimated after each step from the model (the
    paper's MoMo*), never below ``lower_bound``. Matches ``optax.contrib.momo``, except that
    the update is skipped only when ``||d_k||^2`` is exactly 0 (optax: below float64's eps) and
    a non-adapted bound is read from the hyperparameters every step, so ``set_hyperparams``
    can change it.

    Args:
      learning_rate: the cap ``alpha`` >= 0 on the step size (large, 1 by default), or a schedule.
      beta: momentum in [0, 1).
      lower_bound: a lower bound on the loss (0 for most losses).
      weight_decay: ``lambda`` >= 0.
      adapt_lower_bound: estimate the bound on the fly.
      mu_dtype: dtype of the momentum; default the param's, at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: 0.5 * jnp.sum(p**2)
      >>> tx = optix.momo(beta=0.0)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = tx.init(params)
      >>> value, grads = jax.value_and_grad(loss)(params)
      >>> updates, state = tx.update(grads, state, params, value=value)
      >>> optix.apply_updates(params, updates)  # the Polyak step f / ||g||^2 = 0.5
      Array([ 0.5, -1. ], dtype=float32)

    Reference: Schaipp, Ohana, Eickenberg, Defazio & Gower, `MoMo: momentum models for adaptive
    learning rates <https://arxiv.org/abs/2305.07583>`_, ICML 2024.
    """
    spec = Hyperparams(
        learning_rate=learning_rate, beta=beta, lower_bound=lower_bound, weight_decay=weight_decay
    )

    def init(params):
        _check_init(params, "momo")
        hyperparams = spec.init()
        zero = jnp.zeros([], hyperparam_dtype())
        bound = jnp.asarray(spec.step(hyperparams)[0].lower_bound, hyperparam_dtype())
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        return MomoState(hyperparams, mu, zero, zero, bound)

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "momo")
        _validate.check_updates(updates, state.mu, "momo")
        _validate.check_matches_params(updates, params)
        value = _loss_value(extra, "momo")
        h, hyperparams = spec.step(state.hyperparams)
        alpha, lam, floor = h.learning_rate, h.weight_decay, h.lower_bound
        b = jnp.where(h.t == 1, 0, h.beta)  # the averages start from the first values
        loss_avg = b * state.loss_avg + (1 - b) * value
        gamma = b * state.gamma + (1 - b) * _vdot(updates, params)
        # Per-leaf passes around sums over every leaf (the step size needs <d_k, d_k> and
        # <d_k, x_k>), reading the params: not leafwise's one pass, so the casts are here.
        mu_new = _tree.map_leaves(lambda g, m: b * m + (1 - b) * _tree.upcast(g), updates, state.mu)
        norm_sq, iprod = _vdot(mu_new, mu_new), _vdot(mu_new, params)
        k = 1 + alpha * lam
        bound = state.lower_bound if adapt_lower_bound else floor
        if adapt_lower_bound:
            cap = k * (loss_avg - gamma) + iprod
            bound = jnp.where(cap < k * bound, jnp.maximum(cap / (2 * k), floor), bound)
        polyak = _safe_div(jnp.maximum(k * (loss_avg - bound - gamma) + iprod, 0), norm_sq)
        tau = jnp.minimum(alpha, polyak)
        if adapt_lower_bound:
            bound = jnp.maximum(loss_avg + iprod - gamma - tau * norm_sq / 2, floor)

        def step(m, x, g):
            out = -(alpha * lam / k) * _tree.upcast(x) - tau * m
            return out.astype(g.dtype)

        steps = _tree.map_leaves(step, mu_new, params, updates)
        mu = _tree.cast_tree(mu_new, state.mu)
        return steps, MomoState(hyperparams, mu, loss_avg, gamma, bound)

    return GradientTransformation(init, update)


class MomoAdamState(NamedTuple):
    """State of :func:`momo_adam`: Adam's moments, the averaged loss model and the bound."""

    hyperparams: HyperparamState  # learning_rate, b1, b2, eps, lower_bound, weight_decay
    mu: Updates  # EMA of gradients
    nu: Updates  # EMA of squared gradients
    loss_avg: jax.Array  # EMA of losses
    gamma: jax.Array  # EMA of <g_i, x_i>
    lower_bound: jax.Array  # the current estimate of inf f (moves only when adapted)


@transform(MomoAdamState)
def momo_adam(
    learning_rate: NonNegative = 1e-2,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    lower_bound: Finite = 0.0,
    weight_decay: NonNegative = 0.0,
    *,
    adapt_lower_bound: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""MoMo-Adam: AdamW with a Polyak step size capped by the learning rate.

    .. math::
        D_k = \epsilon + \sqrt{v_k / (1-\beta_2^{k+1})}, \quad
        \tau_k = \min\Bigl(\frac{\alpha_k}{1-\beta_1^{k+1}},
        \frac{\bigl[(1+\alpha_k\lambda)(\bar f_k - (1-\beta_1^{k+1}) f_* - \gamma_k)
        + \langle m_k, x_k \rangle\bigr]_+}{\langle m_k, m_k / D_k \rangle}\Bigr),

    .. math::
        x_{k+1} = x_k - \frac{\alpha_k\lambda}{1+\alpha_k\lambda} x_k - \tau_k \frac{m_k}{D_k}

    with Adam's moments ``m_k, v_k`` (``beta_1, beta_2``), and the loss average
    ``f-bar_k`` and ``gamma_k`` as in :func:`momo` but with ``beta_1`` from zero (no warm start;
    the ``1 - beta_1^{k+1}`` factors are the bias correction). Matches
    ``optax.contrib.momo_adam``, with the same two differences as :func:`momo`.

    Args:
      learning_rate: the cap ``alpha`` >= 0, or a schedule.
      b1, b2: Adam's decays in [0, 1).
      eps: added to the root.
      lower_bound: a lower bound on the loss (0 for most losses).
      weight_decay: ``lambda`` >= 0.
      adapt_lower_bound: estimate the bound on the fly.
      mu_dtype, nu_dtype: moment dtypes; default the param's, at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
      >>> tx = optix.momo_adam(0.1, weight_decay=1e-4)
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> value, grads = jax.value_and_grad(loss)(params)
      >>> updates, state = tx.update(grads, state, params, value=value)

    Reference: Schaipp, Ohana, Eickenberg, Defazio & Gower, `MoMo: momentum models for adaptive
    learning rates <https://arxiv.org/abs/2305.07583>`_, ICML 2024.
    """
    spec = Hyperparams(
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        lower_bound=lower_bound,
        weight_decay=weight_decay,
    )

    def init(params):
        _check_init(params, "momo_adam")
        hyperparams = spec.init()
        zero = jnp.zeros([], hyperparam_dtype())
        bound = jnp.asarray(spec.step(hyperparams)[0].lower_bound, hyperparam_dtype())
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, name="nu_dtype")
        return MomoAdamState(hyperparams, mu, nu, zero, zero, bound)

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "momo_adam")
        _validate.check_updates(updates, state.mu, "momo_adam")
        _validate.check_matches_params(updates, params)
        value = _loss_value(extra, "momo_adam")
        h, hyperparams = spec.step(state.hyperparams)
        alpha, lam, floor = h.learning_rate, h.weight_decay, h.lower_bound
        b1, b2, eps = h.b1, h.b2, h.eps
        bc1 = _tree.bias_correction(b1, h.t)
        bc2 = _tree.bias_correction(b2, h.t)
        loss_avg = b1 * state.loss_avg + (1 - b1) * value
        gamma = b1 * state.gamma + (1 - b1) * _vdot(updates, params)

        # Per-leaf passes around sums over every leaf (the step size needs <m_k, m_k / D_k> and
        # <m_k, x_k>), reading the params: not leafwise's one pass, so the casts are here.
        def moments(g, m, v):
            gc = _tree.upcast(g)
            v_new = b2 * v + (1 - b2) * gc * gc
            return b1 * m + (1 - b1) * gc, v_new, eps + jnp.sqrt(v_new / bc2)

        mu_new, nu_new, denom = _tree.map_leaves(moments, updates, state.mu, state.nu, n_out=3)
        direction = _tree.map_leaves(lambda m, d: m / d, mu_new, denom)
        norm_sq, iprod = _vdot(mu_new, direction), _vdot(mu_new, params)
        k = 1 + alpha * lam
        bound = state.lower_bound if adapt_lower_bound else floor
        if adapt_lower_bound:
            cap = k * (loss_avg - gamma) + iprod
            fallback = jnp.maximum(cap / (2 * bc1 * k), floor)
            bound = jnp.where(cap < k * bc1 * bound, fallback, bound)
        polyak = jnp.maximum(k * (loss_avg - bc1 * bound - gamma) + iprod, 0)
        tau = jnp.minimum(alpha / bc1, _safe_div(polyak, norm_sq))
        if adapt_lower_bound:
            bound = jnp.maximum((loss_avg + iprod - gamma - tau * norm_sq / 2) / bc1, floor)

        def step(d, x, g):
            return (-(alpha * lam / k) * _tree.upcast(x) - tau * d).astype(g.dtype)

        steps = _tree.map_leaves(step, direction, params, updates)
        mu, nu = _tree.cast_tree(mu_new, state.mu), _tree.cast_tree(nu_new, state.nu)
        return steps, MomoAdamState(hyperparams, mu, nu, loss_avg, gamma, bound)

    return GradientTransformation(init, update)
