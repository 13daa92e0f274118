r"""ACProp: AdaBelief's centred second moment, applied asynchronously (one step late).

Reference: Zhuang, Ding, Tang, Dvornek, Tatikonda & Duncan, `Momentum centering and asynchronous
update for adaptive gradient methods <https://arxiv.org/abs/2110.05454>`_, NeurIPS 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

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
from optix.toolkit import first_and_second_moments
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


class ScaleByAcpropState(NamedTuple):
    """State of :func:`scale_by_acprop`: the mean and the centred second moment of gradients."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root
    mu: Updates  # EMA of g
    nu: Updates  # EMA of |g - mu|^2 (+ eps_root)


@transform(ScaleByAcpropState)
def scale_by_acprop(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-16,
    eps_root: NonNegative = 1e-16,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide the gradient by the root of the *previous* step's centred second moment.

    .. math::
        u_t = \frac{g_t}{\sqrt{s_{t-1} / (1-\beta_2^{t-1})} + \epsilon}, \quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2) |g_t - m_{t-1}|^2 + \epsilon_{root}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t

    and ``u_1 = g_1 / (1 + eps)`` (no statistic yet). The denominator does not see ``g_t``
    (the "asynchronous" update) and measures the gradient's deviation from its running mean (the
    "centring", as AdaBelief). This is ``optax.contrib.scale_by_acprop``: the numerator is the
    gradient and the deviation is taken from the previous mean ``m_{t-1}``.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_acprop(), optix.scale_lr(1e-3))

    Reference: Zhuang, Ding, Tang, Dvornek, Tatikonda & Duncan, `Momentum centering and
    asynchronous update for adaptive gradient methods <https://arxiv.org/abs/2110.05454>`_,
    NeurIPS 2021.
    """

    def rule(h):
        b1, b2, eps, eps_root = h.b1, h.b2, h.eps, h.eps_root
        previous = h.t - 1  # t - 1 steps have built nu
        first = previous == 0
        # the bias correction divided out once per step: a multiply per element
        c2 = 1 / _tree.bias_correction(b2, jnp.where(first, 1, previous))

        def acprop(g, m, s):
            s_hat = jnp.where(first, 1, s * c2)
            u = g / (jnp.sqrt(s_hat) + eps)
            # the deviation from the previous mean m_{t-1}: s is updated before m
            s = b2 * s + (1 - b2) * _tree.abs_sq(g - m) + eps_root
            m = b1 * m + (1 - b1) * g
            return u, m, s

        return acprop

    def init(params):
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_acprop", ScaleByAcpropState, spec, init=init, rule=rule)


@checked
def acprop(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-16,
    eps_root: NonNegative = 1e-16,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""ACProp with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\Bigl(\frac{g_t}{\sqrt{\hat s_{t-1}} + \epsilon}
        + \lambda \theta_{t-1}\Bigr)

    with ``hat s_{t-1}`` as in :func:`scale_by_acprop`. It is ``chain(scale_by_acprop(...),
    add_decayed_weights(weight_decay, mask), scale_lr(learning_rate))`` and matches
    ``optax.contrib.acprop``.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      b1, b2: decays in [0, 1) of the mean and of the centred second moment.
      eps: added to the root; eps_root: added to the second moment every step.
      weight_decay: decoupled decay ``lambda`` >= 0, multiplied by the learning rate.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      mu_dtype, nu_dtype: moment dtypes; default the param's widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.acprop(0.1)
      >>> params = jnp.ones(2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -3.0]), state, params)
      >>> updates  # no statistic yet: the first step is -lr * g / (1 + eps)
      Array([-0.2,  0.3], dtype=float32)

    Reference: Zhuang, Ding, Tang, Dvornek, Tatikonda & Duncan, `Momentum centering and
    asynchronous update for adaptive gradient methods <https://arxiv.org/abs/2110.05454>`_,
    NeurIPS 2021.
    """
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
