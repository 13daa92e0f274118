r"""Adafactor's two optional pieces: the step relative to the param scale, and the momentum.

:func:`optix.adafactor` (in ``_adafactor.py``, with the factored second moment) chains them; they
sit apart only to keep each module under ~350 lines.

Reference: Shazeer & Stern, `Adafactor: adaptive learning rates with sublinear memory cost
<https://arxiv.org/abs/1804.04235>`_, ICML 2018.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import leafwise
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only
from optix.transforms._trust_ratio import leaf_norm


class ScaleByParamBlockRmsState(NamedTuple):
    """State of :func:`scale_by_param_block_rms`: its hyperparameters only."""

    hyperparams: HyperparamState  # min_scale


@transform(ScaleByParamBlockRmsState)
def scale_by_param_block_rms(min_scale: NonNegative = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by the root mean square of its params, floored at ``min_scale``.

    .. math:: u = g \, \max\big(\mathrm{rms}(\theta), \epsilon_2\big)

    This turns a learning rate into Adafactor's *relative* step size (``epsilon_2 = 1e-3`` in the
    paper), as ``optax.scale_by_param_block_rms`` does.

    Args:
      min_scale: ``epsilon_2`` >= 0.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_param_block_rms()
      >>> params = {"w": jnp.array([3.0, -3.0])}
      >>> tx.update({"w": jnp.ones(2)}, tx.init(params), params)[0]["w"]
      Array([3., 3.], dtype=float32)

    Reference: Shazeer & Stern, `Adafactor: adaptive learning rates with sublinear memory cost
    <https://arxiv.org/abs/1804.04235>`_, ICML 2018, section 8 (relative step size).
    """

    def apply(updates, params, h):
        min_scale = h.min_scale

        # the params enter the per-leaf math without being state, which leafwise does not map
        def scale(u, p):
            rms = leaf_norm(p) / math.sqrt(max(p.size, 1))  # a norm by scaling: no overflow
            return (_tree.upcast(u) * jnp.maximum(rms, min_scale)).astype(u.dtype)

        return _tree.map_leaves(scale, updates, params)

    spec = Hyperparams(min_scale=min_scale)
    return hyperparams_only(
        "scale_by_param_block_rms", ScaleByParamBlockRmsState, spec, apply, needs_params=True
    )


class AdafactorMomentumState(NamedTuple):
    """State of Adafactor's momentum: an exponential moving average, not bias-corrected."""

    hyperparams: HyperparamState  # momentum
    mu: Updates


@transform(AdafactorMomentumState)
def adafactor_momentum(
    momentum: Beta = 0.9, *, mu_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""An exponential moving average of the updates, without bias correction (Adafactor's
    optional momentum, ``optax.ema(momentum, debias=False)``).

    .. math:: m_t = \beta m_{t-1} + (1 - \beta) u_t, \qquad m_0 = 0

    Args:
      momentum: ``beta`` in [0, 1).
      mu_dtype: dtype of the average (default: the param's dtype widened to at least float32).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.adafactor_momentum(0.9), optix.scale_lr(1e-2))
    """
    spec = Hyperparams(momentum=momentum)

    def init(params):
        _validate.check_float_leaves(params, "`adafactor_momentum` params")
        return AdafactorMomentumState(
            spec.init(), _tree.moments_like(params, mu_dtype, name="mu_dtype")
        )

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "adafactor_momentum")
        h, hyperparams = spec.step(state.hyperparams)
        beta = h.momentum

        def ema(u, m):
            m = beta * m + (1 - beta) * u
            return m, m

        updates, mu = leafwise(ema, updates, state.mu)
        return updates, AdafactorMomentumState(hyperparams, mu)

    return GradientTransformation(init, update)
