r"""LAMB: the Adam direction with decoupled weight decay, rescaled per layer by a trust ratio.

Reference: You et al., `Large batch optimization for deep learning: training BERT in 76 minutes
<https://arxiv.org/abs/1904.00962>`_, ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import DTypeLike

from optix._base import GradientTransformation
from optix._base import Params
from optix._chain import chain
from optix.optimizers._adam import scale_by_adam
from optix.toolkit import Beta
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr
from optix.transforms._trust_ratio import scale_by_trust_ratio


@checked
def lamb(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-6,
    eps_root: NonNegative = 0.0,
    weight_decay: NonNegative = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""LAMB: the AdamW direction, rescaled per layer to a step proportional to the layer's norm.

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
        + \lambda \theta_{t-1}, \qquad
        \theta_t = \theta_{t-1} - \eta \, \frac{\lVert \theta_{t-1} \rVert}
        {\lVert r_t \rVert} \, r_t

    with Adam's bias-corrected moments, and norms taken per leaf. A leaf whose param norm or
    ``r_t`` norm is zero takes the plain step ``-eta r_t`` (optax's convention; the paper's
    scaling function ``phi`` is the identity). Matches ``optax.lamb``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, eps, eps_root: Adam's decays and denominators (``eps = 1e-6`` as in the paper).
      weight_decay: ``lambda`` >= 0, decoupled, added before the trust ratio.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      mu_dtype, nu_dtype: moment dtypes.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.lamb(1e-3, weight_decay=0.01)
      >>> params = {"w": jnp.ones((2, 3))}
      >>> updates, state = tx.update({"w": jnp.ones((2, 3))}, tx.init(params), params)

    Reference: You et al., `Large batch optimization for deep learning: training BERT in 76
    minutes <https://arxiv.org/abs/1904.00962>`_, ICLR 2020 (Algorithm 2).
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_lr(learning_rate),
    )
