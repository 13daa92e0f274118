r"""NAdam: Adam with Nesterov momentum and Dozat's momentum-decay schedule.

Reference: Dozat, `Incorporating Nesterov momentum into Adam
<https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, ICLR workshop 2016.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix._chain import chain
from optix._fusable import mark_elementwise
from optix._hyperparams import hyperparam_dtype
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import first_and_second_moments
from optix.toolkit import leafwise
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByNadamState(NamedTuple):
    """State of :func:`scale_by_nadam`: the moments and the running product of momentum terms."""

    hyperparams: HyperparamState  # b1, b2, eps, momentum_decay
    mu: Updates
    nu: Updates
    mu_product: jax.Array  # prod_{i<=t} mu_i, a scalar


@transform(ScaleByNadamState)
def scale_by_nadam(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    momentum_decay: NonNegative = 4e-3,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with Nesterov momentum and Dozat's momentum-decay schedule (NAdam).

    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 \, 0.96^{t \psi}), \quad
        u_t = \frac{(1-\mu_t)\, g_t}{1 - \prod_{i\le t}\mu_i} \frac{1}{d_t}
        + \frac{\mu_{t+1}\, m_t}{1 - \prod_{i \le t+1}\mu_i} \frac{1}{d_t},
        \quad d_t = \sqrt{v_t / (1-\beta_2^t)} + \epsilon

    with ``m_t`` and ``v_t`` Adam's moments and ``psi = momentum_decay``. This matches the paper and
    torch.optim.NAdam. optax's ``nadam`` is a different, simpler rule (Adam with a Nesterov
    look-ahead on the bias-corrected mean, no momentum schedule).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_nadam(), optix.scale_lr(2e-3))

    Reference: Dozat, `Incorporating Nesterov momentum into Adam
    <https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, ICLR workshop 2016.
    """
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, momentum_decay=momentum_decay)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_nadam` params")
        mu, nu = first_and_second_moments(params, mu_dtype, nu_dtype)
        return ScaleByNadamState(spec.init(), mu, nu, jnp.ones([], hyperparam_dtype()))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_nadam")
        h, hyperparams = spec.step(state.hyperparams)
        b1, b2, psi = h.b1, h.b2, h.momentum_decay
        t = h.t.astype(b1.dtype)
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product = state.mu_product * mu_t
        # the bias correction of v moves onto the scalars (times sqrt(bc2) above and below)
        root_bc2 = jnp.sqrt(_tree.bias_correction(b2, h.t))
        coef_g = (1 - mu_t) / (1 - mu_product) * root_bc2
        coef_m = mu_next / (1 - mu_product * mu_next) * root_bc2
        eps = h.eps * root_bc2

        def nadam(g, m, v):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * _tree.abs_sq(g)
            return (coef_g * g + coef_m * m) / (_tree.sqrt_flat_at_zero(v) + eps), m, v

        updates, mu, nu = leafwise(nadam, updates, state.mu, state.nu)
        return updates, ScaleByNadamState(hyperparams, mu, nu, mu_product)

    return mark_elementwise(GradientTransformation(init, update))


@checked
def nadam(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    momentum_decay: NonNegative = 4e-3,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """NAdam: Adam with Nesterov momentum and a warming momentum schedule.

    See :func:`scale_by_nadam` for the update. Matches torch.optim.NAdam and Dozat's paper,
    including ``momentum_decay = 4e-3``; optax's ``nadam`` is a different, simpler rule.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, eps: as in :func:`adam`.
      momentum_decay: ``psi`` >= 0 in ``mu_t = b1 (1 - 0.5 * 0.96^(t psi))``.
      mu_dtype, nu_dtype: moment dtypes.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.nadam(2e-3)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Dozat, `Incorporating Nesterov momentum into Adam
    <https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, ICLR workshop 2016.
    """
    return chain(
        scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )
