r"""COCOB-Backprop: learning-rate-free training by coin betting.

Reference: Orabona & Tommasi, `Training deep networks without learning rates through coin betting
<https://arxiv.org/abs/1705.07795>`_, NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import Positive
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


class ScaleByCocobState(NamedTuple):
    """State of :func:`scale_by_cocob`: the bettor's wealth and statistics, per coordinate."""

    hyperparams: HyperparamState  # alpha, eps
    params0: Params  # x_0, the point bets are made around
    neg_grad_sum: Updates  # theta_t = -sum_i g_i
    max_grad: Updates  # L_t = max(eps, |g_1|, ..., |g_t|)
    abs_grad_sum: Updates  # G_t = sum_i |g_i|
    reward: Updates  # R_t = max(R_{t-1} - g_t (x_t - x_0), 0)


@transform(ScaleByCocobState)
def scale_by_cocob(
    alpha: Positive = 100.0,
    eps: Positive = 1e-8,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""The COCOB-Backprop bet, as a direction: ``x_t - x_{t+1}``, per coordinate.

    .. math::
        L_t = \max(L_{t-1}, |g_t|), \quad G_t = G_{t-1} + |g_t|, \quad
        \theta_t = \theta_{t-1} - g_t, \quad
        R_t = \max\bigl(R_{t-1} - g_t (x_t - x_0), 0\bigr),

    .. math::
        u_t = x_t - x_0 - \frac{\theta_t}{L_t \max(G_t + L_t, \alpha L_t)} (L_t + R_t)

    with ``L_0 = eps`` and ``x_0`` the params ``init`` sees. ``u_t`` is a direction (the bettor's
    step with its sign flipped), so :func:`optix.scale_lr` with ``learning_rate=1`` makes exactly
    the bettor's step; :func:`optix.cocob` is that chain, with weight decay in front. ``update``
    needs ``params``.

    Args:
      alpha: > 0; caps the fraction of the wealth bet early on (100 in the paper).
      eps: > 0, the initial ``L_0`` (keeps the first division finite).
      mu_dtype: dtype of the per-coordinate statistics; default the param's, at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_cocob(), optix.scale_lr(1.0))

    Reference: Orabona & Tommasi, `Training deep networks without learning rates through coin
    betting <https://arxiv.org/abs/1705.07795>`_, NeurIPS 2017, Algorithm 2.
    """

    def init(params):
        _validate.check_real_leaves(params, "scale_by_cocob", "bets compare signed gradients")
        x0 = jax.tree.map(jnp.copy, params)
        # four separate buffers: state that shares one cannot be donated
        sums = [_tree.moments_like(params, mu_dtype, name="mu_dtype") for _ in range(4)]
        return (x0, *sums)

    def rule(h):
        alpha, eps = h.alpha, h.eps

        def cocob(g, x0, theta, big_l, big_g, r, x):
            big_l = jnp.maximum(jnp.maximum(big_l, jnp.abs(g)), eps)
            big_g = big_g + jnp.abs(g)
            r = jnp.maximum(r - g * (x - x0), 0)
            theta = theta - g
            bet = theta / (big_l * jnp.maximum(big_g + big_l, alpha * big_l))
            x_new = x0 + bet * (big_l + r)
            return x - x_new, x0, theta, big_l, big_g, r  # x_0 is read and kept as it was

        return cocob

    spec = Hyperparams(alpha=alpha, eps=eps)
    return per_leaf(
        "scale_by_cocob", ScaleByCocobState, spec, init=init, rule=rule, reads_params=True
    )


@checked
def cocob(
    learning_rate: NonNegative = 1.0,
    alpha: Positive = 100.0,
    eps: Positive = 1e-8,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""COCOB-Backprop: each coordinate bets a fraction of its winnings on the gradient's sign.

    .. math::
        L_t = \max(L_{t-1}, |g_t|), \quad G_t = G_{t-1} + |g_t|, \quad
        \theta_t = \theta_{t-1} - g_t, \quad
        R_t = \max\bigl(R_{t-1} - g_t (x_t - x_0), 0\bigr),

    .. math::
        x_{t+1} = x_t + \eta_t\Bigl(x_0 + \frac{\theta_t}{L_t \max(G_t + L_t, \alpha L_t)}
        (L_t + R_t) - x_t\Bigr)

    per coordinate, with ``L_0 = eps``. It is ``chain(add_decayed_weights(weight_decay, mask),
    scale_by_cocob(alpha, eps), scale_lr(learning_rate))``: the learning rate multiplies the
    bettor's step, as for :func:`optix.prodigy` (keep it 1, or a schedule that starts at 1).
    With ``learning_rate=1`` this is the paper's Algorithm 2 and ``optax.contrib.cocob``.
    optax instead multiplies the *gradients* by the learning rate before betting, and the bet is
    invariant to the scale of the gradients (up to ``eps``), so there a constant learning rate
    has no effect.

    Args:
      learning_rate: multiplier of the bet's step (>= 0), or a schedule.
      alpha: > 0; caps the fraction of the wealth bet early on (100 in the paper).
      eps: > 0, the initial ``L_0`` (keeps the first division finite).
      weight_decay: L2 penalty >= 0 added to the gradient.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      mu_dtype: dtype of the per-coordinate statistics; default the param's, at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.cocob()
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> params = optix.apply_updates(params, updates)

    Reference: Orabona & Tommasi, `Training deep networks without learning rates through coin
    betting <https://arxiv.org/abs/1705.07795>`_, NeurIPS 2017, Algorithm 2.
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_cocob(alpha, eps, mu_dtype=mu_dtype),
        scale_lr(learning_rate),
    )
