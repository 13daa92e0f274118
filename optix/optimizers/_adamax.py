r"""Adamax and AdamaxW: Adam with an exponentially weighted infinity norm in the denominator.

Reference: Kingma & Ba, `Adam: a method for stochastic optimization
<https://arxiv.org/abs/1412.6980>`_, ICLR 2015, section 7.
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


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`: the first moment and the infinity-norm estimate."""

    hyperparams: HyperparamState  # b1, b2, eps
    mu: Updates  # first moment
    nu: Updates  # exponentially weighted infinity norm


@transform(ScaleByAdamaxState)
def scale_by_adamax(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    *,
    eps_in_max: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with the infinity norm in place of the second moment (Adamax).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u^\infty_t = \max(\beta_2 u^\infty_{t-1}, |g_t| + \epsilon), \quad
        u_t = \frac{m_t}{(1-\beta_1^t)\, u^\infty_t}

    ``eps`` sits inside the max, as in torch.optim.Adamax and optax's ``adamax``.
    ``eps_in_max=False`` instead adds it to the denominator: ``u_inf_t = max(b2 u_inf_{t-1},
    |g_t|)`` and ``u_t = m_hat_t / (u_inf_t + eps)``, which keeps ``eps`` from accumulating in a
    slowly decaying norm.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adamax(), optix.scale_lr(2e-3))

    Reference: Kingma & Ba, `Adam: a method for stochastic optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015, section 7.
    """

    def rule(h):
        b1, b2, eps = h.b1, h.b2, h.eps
        bc1 = _tree.bias_correction(b1, h.t)

        def adamax(g, m, u_inf):
            m = b1 * m + (1 - b1) * g
            if eps_in_max:
                u_inf = jnp.maximum(b2 * u_inf, jnp.abs(g) + eps)
                return m / (bc1 * u_inf), m, u_inf
            u_inf = jnp.maximum(b2 * u_inf, jnp.abs(g))
            return (m / bc1) / (u_inf + eps), m, u_inf

        return adamax

    def init(params):
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    spec = Hyperparams(b1=b1, b2=b2, eps=eps)
    return per_leaf("scale_by_adamax", ScaleByAdamaxState, spec, init=init, rule=rule)


@checked
def adamax(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    *,
    eps_in_max: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adamax: Adam with an exponentially weighted infinity norm in the denominator.

    .. math::
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t} \frac{m_t}{u_t}

    torch.optim.Adamax's and optax's convention (``eps`` inside the max); ``eps_in_max=False``
    adds it to the denominator instead.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, eps, mu_dtype, nu_dtype: see :func:`scale_by_adamax`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adamax(2e-3)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Kingma & Ba, ICLR 2015, section 7.
    """
    return chain(
        scale_by_adamax(b1, b2, eps, eps_in_max=eps_in_max, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )


@checked
def adamaxw(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 1e-2,
    mask: Mask = None,
    *,
    eps_in_max: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdamaxW: Adamax with weight decay decoupled from the gradient.

    .. math::
        u^\infty_t = \max(\beta_2 u^\infty_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \eta \Big(\frac{m_t}{(1-\beta_1^t)\, u^\infty_t}
        + \lambda \theta_{t-1}\Big)

    ``chain(scale_by_adamax, add_decayed_weights, scale_lr)``, as optax's ``adamaxw``: the decay is
    multiplied by the learning rate, as in :func:`adamw`. ``eps`` sits inside the max (optax's and
    torch's Adamax); ``eps_in_max=False`` adds it to the denominator instead (see
    :func:`scale_by_adamax`).

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2, eps: as in :func:`adamax`.
      weight_decay: ``lambda`` >= 0 (default 1e-2, as :func:`adamw`; optax's default is 1e-4).
      mask: which params decay: a pytree of bools or a function ``params -> pytree of bools``.
      eps_in_max, mu_dtype, nu_dtype: see :func:`scale_by_adamax`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adamaxw(2e-3, weight_decay=1e-4)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Kingma & Ba, `Adam: a method for stochastic optimization
    <https://arxiv.org/abs/1412.6980>`_, ICLR 2015, section 7; Loshchilov & Hutter, `Decoupled
    weight decay regularization <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    return chain(
        scale_by_adamax(b1, b2, eps, eps_in_max=eps_in_max, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
