r"""RAdam: Adam with a rectified adaptive step, switched off while its variance is unbounded.

Reference: Liu et al., `On the variance of the adaptive learning rate and beyond
<https://arxiv.org/abs/1908.03265>`_, ICLR 2020.
"""

from __future__ import annotations

from typing import Annotated
from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import ScalarOrSchedule
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import Range
from optix.toolkit import checked
from optix.toolkit import first_and_second_moments
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByRadamState(NamedTuple):
    """State of :func:`scale_by_radam`: the hyperparameters and the two moment estimates."""

    hyperparams: HyperparamState  # b1, b2, eps, threshold
    mu: Updates
    nu: Updates


def _check_radam_threshold(name: str, value: object) -> None:
    """``r_t`` is the square root of a negative number while ``2 < rho_t < 4``, and ``rho_t``
    passes through that range on its way up, so a threshold below 4 always ends in NaN."""
    _validate.check_finite(name, value)
    x = _validate.concrete_float(value)
    if x is not None and x < 4:
        raise ValueError(
            f"`{name}` must be >= 4, got {value!r}: the rectification term r_t is the square root "
            "of a negative number while 2 < rho_t < 4, so the step would be NaN (5 in the paper)"
        )


Threshold = Annotated[ScalarOrSchedule, Range(_check_radam_threshold)]
"""RAdam's threshold on ``rho_t``: at least 4."""


@transform(ScaleByRadamState)
def scale_by_radam(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    threshold: Threshold = 5.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with a rectified adaptive step that is switched off while its variance is unbounded.

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \quad
        u_t = \begin{cases}
          \hat m_t \, r_t \, \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\
          \hat m_t & \text{otherwise}
        \end{cases}, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    This is torch.optim.RAdam's rule: ``eps`` is added to ``sqrt(v_t)`` before bias correction.
    optax's ``radam`` adds it after (``sqrt(v_hat) + eps``) and uses the threshold the same way.

    Args:
      threshold: the ``rho_t`` above which the adaptive step is used (5 in the paper and torch);
        at least 4, since ``r_t`` is not real for ``2 < rho_t < 4`` (a scheduled value below 4
        acts as 4).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_radam(), optix.scale_lr(1e-3))

    Reference: Liu et al., `On the variance of the adaptive learning rate and beyond
    <https://arxiv.org/abs/1908.03265>`_, ICLR 2020.
    """

    def rule(h):
        b1, b2, eps = h.b1, h.b2, h.eps
        t = h.t.astype(b2.dtype)
        bc1, bc2 = _tree.bias_correction(b1, h.t), _tree.bias_correction(b2, h.t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / bc2
        rectify = (rho_t > h.threshold) & (rho_t > 4)  # r_t is real only for rho_t > 4
        safe_rho = jnp.where(rectify, rho_t, rho_inf)  # keeps the unused branch finite
        r = jnp.sqrt(
            (safe_rho - 4) * (safe_rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe_rho)
        )
        # scalars once per step, so each element divides once (by sqrt(v) + eps) at most
        inv_bc1 = 1 / bc1
        adaptive_step = inv_bc1 * r * jnp.sqrt(bc2)

        def radam(g, m, v):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * _tree.abs_sq(g)
            adaptive = adaptive_step * m / (_tree.sqrt_flat_at_zero(v) + eps)
            return jnp.where(rectify, adaptive, inv_bc1 * m), m, v

        return radam

    def init(params):
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    spec = Hyperparams(b1=b1, b2=b2, eps=eps, threshold=threshold)
    return per_leaf("scale_by_radam", ScaleByRadamState, spec, init=init, rule=rule)


@checked
def radam(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    threshold: Threshold = 5.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """RAdam: Adam whose adaptive step is rectified, and skipped while its variance is unbounded.

    See :func:`scale_by_radam` for the update. Matches torch.optim.RAdam (``eps`` added before
    bias correction; plain momentum SGD while ``rho_t <= 5``); optax's ``radam`` adds ``eps`` after.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, eps: as in :func:`adam`.
      threshold: ``rho_t`` above which the adaptive step is used.
      mu_dtype, nu_dtype: moment dtypes.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.radam(1e-3)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Liu et al., `On the variance of the adaptive learning rate and beyond
    <https://arxiv.org/abs/1908.03265>`_, ICLR 2020.
    """
    return chain(
        scale_by_radam(b1, b2, eps, threshold, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )
