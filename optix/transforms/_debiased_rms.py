r"""Adam's bias-corrected second moment without a first moment: the direction schedule-free
AdamW averages.

Reference: Kingma & Ba, `Adam: a method for stochastic optimization
<https://arxiv.org/abs/1412.6980>`_, ICLR 2015.
"""

from __future__ import annotations

from typing import NamedTuple

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


class ScaleByDebiasedRmsState(NamedTuple):
    """State of :func:`scale_by_debiased_rms`: the second-moment estimate."""

    hyperparams: HyperparamState  # b2, eps; count is t
    nu: Updates


@transform(ScaleByDebiasedRmsState)
def scale_by_debiased_rms(
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    *,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide by the root of the bias-corrected second moment: Adam without momentum.

    .. math::
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2, \qquad
        u_t = g_t / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon)

    This is the direction :func:`optix.schedule_free_adamw` feeds to :func:`schedule_free`
    (``scale_by_adam(b1=0)`` computes the same, with an unused first moment).

    Example:
      >>> import optix
      >>> tx = optix.schedule_free(optix.scale_by_debiased_rms(), learning_rate=1e-3)

    Reference: Kingma & Ba, `Adam: a method for stochastic optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015.
    """
    spec = Hyperparams(b2=b2, eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_debiased_rms` params")
        return ScaleByDebiasedRmsState(
            spec.init(), _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        )

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.nu, "scale_by_debiased_rms")
        h, hyperparams = spec.step(state.hyperparams)
        b2, eps = h.b2, h.eps
        # the bias correction divided out once per step: a multiply per element
        c2 = 1 / _tree.bias_correction(b2, h.t)

        def leaf(g, v):
            v = b2 * v + (1 - b2) * _tree.abs_sq(g)
            return g / (_tree.sqrt_flat_at_zero(v * c2) + eps), v

        updates, nu = leafwise(leaf, updates, state.nu)
        return updates, ScaleByDebiasedRmsState(hyperparams, nu)

    return GradientTransformation(init, update)
