r"""ADOPT: the gradient normalised by the previous second moment, clipped, then averaged.

Reference: Taniguchi et al., `ADOPT: modified Adam can converge with any beta2 with the optimal
rate <https://arxiv.org/abs/2411.02853>`_, NeurIPS 2024.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import ScalarOrSchedule
from optix._base import Updates
from optix._chain import chain
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import NonNegativeOrNone
from optix.toolkit import checked
from optix.toolkit import first_and_second_moments
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


def adopt_clip_schedule(count: ArrayLike) -> jax.Array:
    r"""ADOPT's default clipping threshold ``c_t = t^(1/4)`` at update ``t = count``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_adopt()  # clip_value defaults to this schedule
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(17):  # the 17th update is made at count 16
      ...     _, state = tx.update(jnp.ones(2), state)
      >>> float(optix.get_hyperparams(state)["clip_value"])
      2.0
    """
    return jnp.asarray(count, hyperparam_dtype()) ** 0.25


class ScaleByAdoptState(NamedTuple):
    """State of :func:`scale_by_adopt`: the normalised-gradient momentum and the second moment."""

    hyperparams: HyperparamState  # b1, b2, eps[, clip_value]
    mu: Updates  # EMA of clipped g_t / max(sqrt(v_{t-1}), eps)
    nu: Updates  # EMA of |g|^2, started at |g_0|^2


@transform(ScaleByAdoptState)
def scale_by_adopt(
    b1: Beta = 0.9,
    b2: Beta = 0.9999,
    eps: NonNegative = 1e-6,
    *,
    clip_value: NonNegativeOrNone = adopt_clip_schedule,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Normalise the gradient by the *previous* second moment, then take momentum (ADOPT).

    .. math::
        v_0 = |g_0|^2, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
        \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c_t\Big), \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \quad u_t = m_t

    The first update only initialises ``v`` and returns zeros (the paper's step 0). Because
    ``g_t`` is divided by a second moment that does not contain it, no bias correction is needed
    and any ``b2`` converges. This is the paper's Algorithm 2 and optax.contrib's
    ``scale_by_adopt``.

    Args:
      b1, b2: moment decays in [0, 1).
      eps: floor of the denominator.
      clip_value: the clipping threshold ``c_t``: a schedule of the update count (default
        ``t^(1/4)``, the paper's), a constant, or None for no clipping (the paper's Algorithm 1).
        Clipping is not defined for complex params.
      nesterov: return ``b1 m_t + (1 - b1) clip(...)`` instead of ``m_t`` (optax's option).
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adopt(), optix.scale_lr(1e-3))

    Reference: Taniguchi et al., `ADOPT: modified Adam can converge with any beta2 with the
    optimal rate <https://arxiv.org/abs/2411.02853>`_, NeurIPS 2024, Algorithms 1 and 2.
    """
    clipping = clip_value is not None
    values: dict[str, ScalarOrSchedule] = dict(b1=b1, b2=b2, eps=eps)
    if clip_value is not None:
        values["clip_value"] = clip_value

    def init(params):
        if clipping:
            why = "clipping is not defined for them; pass clip_value=None to use ADOPT without it"
            _validate.check_real_leaves(params, "scale_by_adopt", why)
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    def rule(h):
        first = h.t == 1
        b1 = jnp.where(first, 1, h.b1)  # step 0 leaves m at 0 ...
        b2 = jnp.where(first, 0, h.b2)  # ... and sets v_0 = |g_0|^2
        eps, c = h.eps, h.clip_value if clipping else None

        def adopt(g, m, v):
            normed = g / jnp.maximum(_tree.sqrt_flat_at_zero(v), eps)
            if c is not None:
                normed = jnp.clip(normed, -c, c)
            m = b1 * m + (1 - b1) * normed
            v = b2 * v + (1 - b2) * _tree.abs_sq(g)
            u = b1 * m + (1 - b1) * normed if nesterov else m
            return u, m, v

        return adopt

    spec = Hyperparams(**values)
    return per_leaf("scale_by_adopt", ScaleByAdoptState, spec, init=init, rule=rule)


@checked
def adopt(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.9999,
    eps: NonNegative = 1e-6,
    weight_decay: NonNegativeOrNone = None,
    mask: Mask = None,
    *,
    clip_value: NonNegativeOrNone = adopt_clip_schedule,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""ADOPT: Adam with the gradient normalised by the previous second moment, then averaged.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
        \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, t^{1/4}\Big), \quad
        \theta_t = \theta_{t-1} - \eta\,(m_t + \lambda \theta_{t-1})

    It is ``chain(scale_by_adopt(...), scale_lr(learning_rate))``, with
    ``add_decayed_weights(weight_decay, mask)`` before ``scale_lr`` when ``weight_decay`` is
    given (see :func:`scale_by_adopt`); the first step only initialises ``v_0 = g_0^2`` and does
    not move the params (except by weight decay). Without ``weight_decay`` this is
    optax.contrib's ``adopt``. With it, the decay is decoupled and multiplied by the learning
    rate, as in :func:`adamw` (the authors' ``decouple=True`` option); the params are then needed.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2: decays in [0, 1) (ADOPT converges for any ``b2``; 0.9999 is the paper's).
      eps: floor of the denominator.
      weight_decay: decoupled decay ``lambda`` >= 0, or None for none.
      mask: which params decay (see :func:`adamw`).
      clip_value: clipping threshold: a schedule of the count (default ``t^(1/4)``), a
        constant, or None.
      nesterov: Nesterov form of the momentum (optax's option).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adopt(1e-3)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Taniguchi et al., `ADOPT: modified Adam can converge with any beta2 with the
    optimal rate <https://arxiv.org/abs/2411.02853>`_, NeurIPS 2024.
    """
    scaling = scale_by_adopt(
        b1,
        b2,
        eps,
        clip_value=clip_value,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    if weight_decay is None:
        return chain(scaling, scale_lr(learning_rate))
    return chain(scaling, add_decayed_weights(weight_decay, mask), scale_lr(learning_rate))
