r"""An exponential moving average of the updates, optionally bias-corrected (optax's ``ema``)."""

from __future__ import annotations

from typing import NamedTuple

from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Updates
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import per_leaf
from optix.toolkit import transform


class EmaState(NamedTuple):
    """State of :func:`ema`: the decay and the running average of the updates."""

    hyperparams: HyperparamState  # decay; count is t
    ema: Updates  # m_t, not bias-corrected


@transform(EmaState)
def ema(
    decay: Beta,
    debias: bool = True,
    *,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Replace the updates by an exponential moving average of all updates so far.

    .. math:: m_t = \beta m_{t-1} + (1-\beta) g_t, \quad m_0 = 0, \qquad
        u_t = \begin{cases} m_t / (1 - \beta^t) & \text{debias} \\ m_t & \text{otherwise}
        \end{cases}

    This averages the *updates* (optax's ``ema``); :func:`param_ema` averages the params. Unlike
    :func:`scale_by_momentum` (``b_t = mu b_{t-1} + g_t``), the new update is weighted by
    ``1 - beta``. With ``debias=False`` it equals :func:`adafactor_momentum`.

    Args:
      decay: ``beta`` in [0, 1), or a schedule.
      debias: divide by ``1 - beta^t`` so early averages are not biased towards 0.
      accumulator_dtype: dtype of ``m``; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.ema(0.9)
      >>> state = tx.init(jnp.zeros(2))
      >>> tx.update(jnp.array([1.0, -2.0]), state)[0]  # debiased: the first average is g_1
      Array([ 1., -2.], dtype=float32)

    Reference: Kingma & Ba, `Adam: a method for stochastic optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015, section 3 (bias correction).
    """

    def rule(h):
        beta = h.decay
        # the bias correction divided out once per step: a multiply per element
        c = 1 / _tree.bias_correction(beta, h.t) if debias else None

        def running_mean(g, m):
            m = beta * m + (1 - beta) * g
            return (m * c if debias else m), m

        return running_mean

    def init(params):
        return (_tree.moments_like(params, accumulator_dtype, name="accumulator_dtype"),)

    spec = Hyperparams(decay=decay)
    return per_leaf("ema", EmaState, spec, init=init, rule=rule)
