r"""NAdamW (NAdam with decoupled weight decay), and optax's NAdam rule: Adam with a Nesterov
look-ahead on the bias-corrected mean, without Dozat's momentum schedule.

Reference: Dozat, `Incorporating Nesterov momentum into Adam
<https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, ICLR workshop 2016; Loshchilov & Hutter,
`Decoupled weight decay regularization <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.optimizers._nadam import scale_by_nadam
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


class ScaleByNesterovAdamState(NamedTuple):
    """State of :func:`scale_by_nesterov_adam`: the hyperparameters and Adam's two moments."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root; count is t
    mu: Updates  # first moment m_t
    nu: Updates  # second moment v_t (of |g|^2)


@transform(ScaleByNesterovAdamState)
def scale_by_nesterov_adam(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with a Nesterov look-ahead on the bias-corrected mean (optax's NAdam rule).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \\
        u_t = \frac{\beta_1 m_t / (1-\beta_1^{t+1}) + (1-\beta_1)\, g_t / (1-\beta_1^t)}
        {\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    This is Dozat's rule with a constant momentum ``mu_t = beta_1``; it is what optax's
    ``nadam``, ``nadamw`` and ``scale_by_adam(nesterov=True)`` compute. :func:`scale_by_nadam`
    (torch.optim.NAdam, Dozat's paper) adds the warming schedule
    ``mu_t = beta_1 (1 - 0.5 \cdot 0.96^{t \psi})``, so the two differ at every step.

    Args:
      b1, b2: moment decays in [0, 1).
      eps: added to the denominator, outside the root.
      eps_root: added inside the root (for differentiating through the optimizer).
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least
        float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_nesterov_adam(), optix.scale_lr(1e-3))

    Reference: Dozat, `Incorporating Nesterov momentum into Adam
    <https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, ICLR workshop 2016.
    """

    def rule(h):
        b1, b2 = h.b1, h.b2
        bc1 = _tree.bias_correction(b1, h.t)
        bc1_next = 1 - b1 ** (h.t.astype(b1.dtype) + 1)
        bc2 = _tree.bias_correction(b2, h.t)
        # u_t above times sqrt(bc2) top and bottom: every correction is a per-step scalar, so
        # each element divides once
        root_bc2 = jnp.sqrt(bc2)
        coef_m, coef_g = b1 * root_bc2 / bc1_next, (1 - b1) * root_bc2 / bc1
        eps_root, eps = h.eps_root * bc2, h.eps * root_bc2

        def nesterov_adam(g, m, v):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * _tree.abs_sq(g)
            return (coef_m * m + coef_g * g) / (_tree.sqrt_flat_at_zero(v + eps_root) + eps), m, v

        return nesterov_adam

    def init(params):
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_nesterov_adam", ScaleByNesterovAdamState, spec, init=init, rule=rule)


@checked
def nadamw(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 1e-2,
    mask: Mask = None,
    momentum_decay: NonNegativeOrNone = None,
    *,
    momentum_schedule: bool = True,
    eps_root: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""NAdamW: NAdam with decoupled weight decay.

    .. math:: \theta_t = \theta_{t-1} - \eta \big(\text{nadam}_t + \lambda \theta_{t-1}\big)

    ``chain(scale_by_nadam, add_decayed_weights, scale_lr)``: by default the NAdam direction is
    :func:`scale_by_nadam`'s, Dozat's rule with the momentum schedule, as in :func:`nadam` and
    torch.optim.NAdam with ``decoupled_weight_decay=True``. ``momentum_schedule=False`` uses
    :func:`scale_by_nesterov_adam` instead, the rule of optax's ``nadamw`` (constant momentum
    ``b1``; it also takes ``eps_root``). The decay is multiplied by the learning rate, as in
    :func:`adamw`.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2, eps: as in :func:`adam`.
      weight_decay: ``lambda`` >= 0 (default 1e-2, as :func:`adamw`; optax's default is 1e-4).
      mask: which params decay: a pytree of bools or a function ``params -> pytree of bools``.
      momentum_decay: ``psi`` >= 0 of the momentum schedule (default 4e-3); only with
        ``momentum_schedule=True``.
      momentum_schedule: Dozat's warming momentum schedule (torch); False for optax's rule.
      eps_root: added inside the root; only with ``momentum_schedule=False``.
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.nadamw(1e-3, weight_decay=1e-4, momentum_schedule=False)  # optax.nadamw
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Dozat, `Incorporating Nesterov momentum into Adam
    <https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, 2016; Loshchilov & Hutter,
    `Decoupled weight decay regularization <https://arxiv.org/abs/1711.05101>`_, ICLR 2019.
    """
    if momentum_schedule:
        if callable(eps_root) or _validate.concrete_float(eps_root) != 0.0:
            raise ValueError(
                "`eps_root` is only used with `momentum_schedule=False` (optax's rule); "
                "Dozat's scheduled rule has no root epsilon"
            )
        psi = 4e-3 if momentum_decay is None else momentum_decay
        direction = scale_by_nadam(b1, b2, eps, psi, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    else:
        if momentum_decay is not None:
            raise ValueError(
                "`momentum_decay` sets the momentum schedule, which `momentum_schedule=False` "
                "turns off; leave it unset"
            )
        direction = scale_by_nesterov_adam(
            b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        )
    return chain(direction, add_decayed_weights(weight_decay, mask), scale_lr(learning_rate))
