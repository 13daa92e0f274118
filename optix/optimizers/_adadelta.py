r"""AdaDelta: steps sized by the ratio of running RMS of past steps and of gradients.

Reference: Zeiler, `ADADELTA: an adaptive learning rate method <https://arxiv.org/abs/1212.5701>`_,
2012.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`: running means of squared gradients and steps."""

    hyperparams: HyperparamState  # rho, eps
    e_g: Updates  # running mean of |g|^2
    e_x: Updates  # running mean of |delta|^2


@transform(ScaleByAdadeltaState)
def scale_by_adadelta(
    rho: Beta = 0.9,
    eps: NonNegative = 1e-6,
    *,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Scale by the ratio of running RMS of past steps to running RMS of gradients (AdaDelta).

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) |g_t|^2, \quad
        \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t,
        \quad E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho) |\Delta_t|^2

    The update is ``Delta_t``; :func:`optix.adadelta` multiplies it by ``-learning_rate`` (1.0 in
    the paper and by default), as torch.optim.Adadelta does.

    Args:
      rho: decay of both running means, in [0, 1).
      eps: added inside both roots.
      accumulator_dtype: dtype of the running means; default: the param's real dtype widened to
        at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adadelta(), optix.scale_lr(1.0))

    Reference: Zeiler, `ADADELTA: an adaptive learning rate method
    <https://arxiv.org/abs/1212.5701>`_, 2012.
    """

    def init(params):
        def zeros():  # one buffer each: a donated state must not hold one buffer twice
            return _tree.moments_like(
                params, accumulator_dtype, real=True, name="accumulator_dtype"
            )

        return zeros(), zeros()

    def rule(h):
        rho, eps = h.rho, h.eps

        def adadelta_(g, e_g, e_x):
            # (1 - rho) |x|^2 as |sqrt(1 - rho) x|^2: finite wherever the running mean is
            c = jnp.sqrt(1 - rho)
            e_g = rho * e_g + _tree.abs_sq(c * g)
            delta = jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps) * g
            e_x = rho * e_x + _tree.abs_sq(c * delta)
            return delta, e_g, e_x

        return adadelta_

    spec = Hyperparams(rho=rho, eps=eps)
    return per_leaf("scale_by_adadelta", ScaleByAdadeltaState, spec, init=init, rule=rule)


@checked
def adadelta(
    learning_rate: NonNegative = 1.0,
    rho: Beta = 0.9,
    eps: NonNegative = 1e-6,
) -> GradientTransformation:
    r"""AdaDelta: steps sized by the ratio of running RMS of past steps and of gradients.

    .. math::
        \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t,
        \qquad \theta_t = \theta_{t-1} - \eta \Delta_t

    ``chain(scale_by_adadelta, scale_lr)``. The paper has no learning rate (``eta = 1``, the
    default); torch.optim.Adadelta adds one, and so does optix.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      rho: decay of the running means, in [0, 1).
      eps: added inside both roots.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adadelta()
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Zeiler, `ADADELTA: an adaptive learning rate method
    <https://arxiv.org/abs/1212.5701>`_, 2012.
    """
    return chain(scale_by_adadelta(rho, eps), scale_lr(learning_rate))
