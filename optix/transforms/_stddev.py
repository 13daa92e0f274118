r"""Rescaling by the running standard deviation of the updates (centered RMS), optionally
bias-corrected."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import per_leaf
from optix.toolkit import transform


class ScaleByStddevState(NamedTuple):
    """State of :func:`scale_by_stddev`: the running means of ``g`` and of ``|g|^2``."""

    hyperparams: HyperparamState  # decay, eps; count is t
    mu: Updates  # running mean of g
    nu: Updates  # running mean of |g|^2


@transform(ScaleByStddevState)
def scale_by_stddev(
    decay: Beta = 0.9,
    eps: NonNegative = 1e-8,
    initial_scale: ArrayLike = 0.0,
    *,
    eps_in_sqrt: bool = False,
    bias_correction: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide updates by a running estimate of their standard deviation (centered RMSprop).

    .. math::
        m_t = \rho m_{t-1} + (1-\rho) g_t, \quad
        \nu_t = \rho \nu_{t-1} + (1-\rho) |g_t|^2, \quad
        u_t = \frac{g_t}{\sqrt{\hat\nu_t - |\hat m_t|^2} + \epsilon}

    with ``hat m_t = m_t``, ``hat nu_t = nu_t``, or with ``bias_correction=True`` both divided by
    ``1 - rho^t``. ``m_0 = 0`` and ``nu_0 = initial_scale``.

    ``eps`` sits outside the root by default, as in :func:`scale_by_rms` and torch's centered
    RMSprop; ``eps_in_sqrt=True`` gives ``g / sqrt(hat nu - |hat m|^2 + eps)``, the default of
    optax's ``scale_by_stddev``. Without bias correction this equals
    ``scale_by_rms(centered=True)``.

    Args:
      decay: ``rho`` in [0, 1).
      eps: ``epsilon`` >= 0.
      initial_scale: ``nu_0`` >= 0.
      eps_in_sqrt: put ``eps`` inside the root (optax's default) instead of outside.
      bias_correction: divide both running means by ``1 - rho^t``.
      mu_dtype, nu_dtype: dtypes of the running means; default: the param's dtype widened to at
        least float32 (real for ``nu``).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_stddev(0.99, bias_correction=True), optix.scale_lr(1e-3))

    Reference: Graves, `Generating sequences with recurrent neural networks
    <https://arxiv.org/abs/1308.0850>`_, 2013, eq. 38-41.
    """
    _validate.check_nonnegative("initial_scale", initial_scale)

    def init(params):
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, fill=initial_scale, name="nu_dtype")
        return mu, nu

    def rule(h):
        rho, eps = h.decay, h.eps
        bc = _tree.bias_correction(rho, h.t) if bias_correction else 1

        def stddev(g, m, v):
            m = rho * m + (1 - rho) * g
            v = rho * v + (1 - rho) * _tree.abs_sq(g)
            var = v / bc - _tree.abs_sq(m / bc)
            return g / (jnp.sqrt(var + eps) if eps_in_sqrt else jnp.sqrt(var) + eps), m, v

        return stddev

    spec = Hyperparams(decay=decay, eps=eps)
    return per_leaf("scale_by_stddev", ScaleByStddevState, spec, init=init, rule=rule)
