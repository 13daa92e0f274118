r"""MADGRAD: momentumized, adaptive, dual-averaged gradient descent.

Reference: Defazio & Jelassi, `Adaptivity without compromise: a momentumized, adaptive, dual
averaged gradient method for stochastic optimization <https://arxiv.org/abs/2101.11075>`_, JMLR
2022.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights

Mask = Any | Callable[[Params], Any] | None


class ScaleByMadgradState(NamedTuple):
    """State of :func:`scale_by_madgrad`: the dual-averaging sums and the initial params."""

    hyperparams: HyperparamState  # learning_rate, momentum, eps
    grad_sum_sq: Updates  # G_k = sum_i lambda_i |g_i|^2
    grad_sum: Updates  # s_k = sum_i lambda_i g_i
    params0: Params  # x_0, the centre of the dual average


@transform(ScaleByMadgradState)
def scale_by_madgrad(
    learning_rate: NonNegative = 1e-2,
    momentum: Beta = 0.9,
    eps: NonNegative = 1e-6,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""The MADGRAD step (see :func:`optix.madgrad`); it includes ``-learning_rate``.

    The learning rate weights each gradient inside the dual average, so it cannot be applied
    afterwards by :func:`optix.scale_lr`: like :func:`optix.prodigy`, this transform
    produces the final step and ends a chain.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.clip_by_global_norm(1.0), optix.scale_by_madgrad(1e-2))

    Reference: Defazio & Jelassi, `Adaptivity without compromise: a momentumized, adaptive, dual
    averaged gradient method for stochastic optimization <https://arxiv.org/abs/2101.11075>`_,
    JMLR 2022.
    """

    def init(params):
        sums = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        sq = _tree.moments_like(params, mu_dtype, real=True, name="mu_dtype")
        return sq, sums, jax.tree.map(jnp.copy, params)

    def rule(h):
        eps = h.eps
        k = (h.t - 1).astype(h.learning_rate.dtype)  # the 0-based step
        # lambda_k = (lr + eps) sqrt(k + 1): the authors' code adds eps to the rate
        lam = (h.learning_rate + eps) * jnp.sqrt(k + 1)
        c = 1 - h.momentum

        def madgrad(g, big_g, s, x0, x):
            big_g = big_g + lam * _tree.abs_sq(g)
            s = s + lam * g
            z = x0 - s / (jnp.cbrt(big_g) + eps)
            # x_{k+1} - x_k = c (z_{k+1} - x_k), without the cancellation of forming x_{k+1}
            return c * (z - x), big_g, s, x0  # x_0 is read and kept as it was

        return madgrad

    spec = Hyperparams(learning_rate=learning_rate, momentum=momentum, eps=eps)
    return per_leaf(
        "scale_by_madgrad", ScaleByMadgradState, spec, init=init, rule=rule, reads_params=True
    )


@checked
def madgrad(
    learning_rate: NonNegative = 1e-2,
    momentum: Beta = 0.9,
    weight_decay: NonNegative = 0.0,
    eps: NonNegative = 1e-6,
    mask: Mask = None,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""MADGRAD: dual averaging with a cube-root AdaGrad denominator and momentum by averaging.

    .. math::
        \lambda_k = (\eta_k + \epsilon)\sqrt{k + 1}, \quad
        s_{k+1} = s_k + \lambda_k g_k, \quad
        G_{k+1} = G_k + \lambda_k |g_k|^2,

    .. math::
        z_{k+1} = x_0 - \frac{s_{k+1}}{G_{k+1}^{1/3} + \epsilon}, \quad
        x_{k+1} = \beta x_k + (1 - \beta) z_{k+1}

    with ``k`` the 0-based step, ``beta = momentum`` and ``g_k`` the gradient plus
    ``weight_decay * x_k`` (the L2 penalty, added before the step, as in the authors' default and
    optax). It is ``chain(add_decayed_weights(weight_decay, mask), scale_by_madgrad(...))``:
    the learning rate sits inside the dual average (the step grows like ``lr^(2/3)``), so it is
    part of :func:`scale_by_madgrad` rather than a final :func:`optix.scale_lr`. Matches
    ``optax.contrib.madgrad`` and the authors' code, ``eps`` added to the rate included.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      momentum: ``beta`` in [0, 1).
      weight_decay: L2 penalty >= 0 added to the gradient.
      eps: added to the cube root and to the rate.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      mu_dtype: dtype of the two sums; default the param's widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.madgrad(1e-2, weight_decay=1e-4)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> params = optix.apply_updates(params, updates)

    Reference: Defazio & Jelassi, `Adaptivity without compromise: a momentumized, adaptive, dual
    averaged gradient method for stochastic optimization <https://arxiv.org/abs/2101.11075>`_,
    JMLR 2022.
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_madgrad(learning_rate, momentum, eps, mu_dtype=mu_dtype),
    )
