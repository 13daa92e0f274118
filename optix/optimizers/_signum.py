r"""signSGD and Signum: steps by the sign of the gradient, or of a momentum of gradients.

Reference: Bernstein, Wang, Azizzadenesheli & Anandkumar, `signSGD: compressed optimisation for
non-convex problems <https://arxiv.org/abs/1802.04434>`_, ICML 2018.
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
from optix.transforms._scale import scale_by_sign
from optix.transforms._scale import scale_lr


class ScaleBySignumState(NamedTuple):
    """State of :func:`scale_by_signum`: the hyperparameters and the momentum."""

    hyperparams: HyperparamState  # beta
    mu: Updates  # EMA of gradients (decay beta), not bias-corrected (the sign ignores it)


@transform(ScaleBySignumState)
def scale_by_signum(
    beta: Beta = 0.9, *, mu_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""The sign of an exponential moving average of the gradients (Signum).

    .. math:: m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad u_t = \mathrm{sign}(m_t)

    ``beta = 0`` is signSGD (:func:`optix.scale_by_sign`). For complex leaves
    ``sign(z) = z / |z|``. Matches the paper's Algorithm 1 and optax's ``signum``.

    Args:
      beta: momentum decay in [0, 1).
      mu_dtype: dtype of the momentum; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_signum(0.9), optix.scale_lr(1e-3))

    Reference: Bernstein et al., `signSGD: compressed optimisation for non-convex problems
    <https://arxiv.org/abs/1802.04434>`_, ICML 2018, Algorithm 1.
    """

    def rule(h):
        beta = h.beta

        def signum_(g, m):
            m = beta * m + (1 - beta) * g
            return jnp.sign(m), m

        return signum_

    def init(params):
        return (_tree.moments_like(params, mu_dtype, name="mu_dtype"),)

    spec = Hyperparams(beta=beta)
    return per_leaf("scale_by_signum", ScaleBySignumState, spec, init=init, rule=rule)


@checked
def sign_sgd(learning_rate: NonNegative) -> GradientTransformation:
    r"""signSGD: step by the sign of each gradient component.

    .. math:: \theta_t = \theta_{t-1} - \eta\, \mathrm{sign}(g_t)

    ``chain(scale_by_sign, scale_lr)``. For complex leaves ``sign(z) = z / |z|``. Matches optax's
    ``sign_sgd``.

    Args:
      learning_rate: step size >= 0, or a schedule.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.sign_sgd(0.1)
      >>> tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))[0]
      Array([ 0.1, -0.1], dtype=float32)

    Reference: Bernstein et al., `signSGD: compressed optimisation for non-convex problems
    <https://arxiv.org/abs/1802.04434>`_, ICML 2018.
    """
    return chain(scale_by_sign(), scale_lr(learning_rate))


@checked
def signum(
    learning_rate: NonNegative,
    beta: Beta = 0.9,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Signum: signSGD with momentum, stepping by the sign of a gradient EMA.

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad
        \theta_t = \theta_{t-1} - \eta\, \mathrm{sign}(m_t)

    ``chain(scale_by_signum, scale_lr)``; matches optax's ``signum``. For weight decay, chain
    :func:`add_decayed_weights` in front (the paper's form, decay inside the sign).

    Args:
      learning_rate: step size >= 0, or a schedule.
      beta: momentum decay in [0, 1).
      mu_dtype: dtype of the momentum; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.signum(0.1, beta=0.9)
      >>> _, state = tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))
      >>> tx.update(jnp.array([1.0, 1.0]), state)[0]  # the sign of m = [-0.17, 0.28], not of g
      Array([ 0.1, -0.1], dtype=float32)

    Reference: Bernstein et al., `signSGD: compressed optimisation for non-convex problems
    <https://arxiv.org/abs/1802.04434>`_, ICML 2018, Algorithm 1 (Signum).
    """
    return chain(scale_by_signum(beta, mu_dtype=mu_dtype), scale_lr(learning_rate))
