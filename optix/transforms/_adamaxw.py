r"""AdamaxW: Adamax with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import DTypeLike

from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._adam import scale_by_adamax
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-2,
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
