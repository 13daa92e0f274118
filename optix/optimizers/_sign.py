"""Sign-based optimizers: signSGD, Signum, Rprop."""

from __future__ import annotations

from jax.typing import DTypeLike

from optix._base import GradientTransformation, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._scale import scale_by_sign, scale_lr
from optix.transforms._sign import scale_by_rprop, scale_by_signum


def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""signSGD: step by the sign of each gradient component.

    .. math:: \theta_t = \theta_{t-1} - \eta\, \mathrm{sign}(g_t)

    For complex leaves ``sign(z) = z / |z|``. Matches optax's ``sign_sgd``.

    Args:
      learning_rate: step size >= 0, or a schedule.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.sign_sgd(0.1)
      >>> tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))[0]
      Array([ 0.1, -0.1], dtype=float32)

    Reference: Bernstein et al., "signSGD: compressed optimisation for non-convex problems",
    ICML 2018.
    """
    return chain(scale_by_sign(), scale_lr(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule,
    beta: ScalarOrSchedule = 0.9,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Signum: signSGD with momentum, stepping by the sign of a gradient EMA.

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad
        \theta_t = \theta_{t-1} - \eta\, \mathrm{sign}(m_t)

    See :func:`scale_by_signum`; matches optax's ``signum``. For weight decay, chain
    :func:`add_decayed_weights` in front (the paper's form, decay inside the sign).

    Args:
      learning_rate: step size >= 0, or a schedule.
      beta: momentum decay in [0, 1).
      mu_dtype: dtype of the momentum; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.signum(0.1)
      >>> tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))[0]
      Array([ 0.1, -0.1], dtype=float32)

    Reference: Bernstein et al., "signSGD: compressed optimisation for non-convex problems",
    ICML 2018, Algorithm 1 (Signum).
    """
    return chain(scale_by_signum(beta, mu_dtype=mu_dtype), scale_lr(learning_rate))


def rprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    eta_minus: ScalarOrSchedule = 0.5,
    eta_plus: ScalarOrSchedule = 1.2,
    min_step_size: ScalarOrSchedule = 1e-6,
    max_step_size: ScalarOrSchedule = 50.0,
) -> GradientTransformation:
    r"""Rprop: per-element step sizes grown while the gradient keeps its sign, cut when it flips.

    .. math::
        s_t = \mathrm{clip}(s_{t-1} \eta^{\pm}, s_{min}, s_{max}), \qquad
        \theta_t = \theta_{t-1} - s_t\, \mathrm{sign}(g_t)

    with ``eta_plus`` after agreeing signs, ``eta_minus`` after a flip (which skips that
    element's step and its next adaptation: iRprop-). ``learning_rate`` is the initial step
    size; see :func:`scale_by_rprop`, which this is (it produces the step itself). Matches
    torch.optim.Rprop, defaults included; optax 0.2.8's ``rprop`` applies each step one update
    late. Rprop is a full-batch method: the step sizes assume gradient signs that are not noise.

    Args:
      learning_rate: initial step size >= 0, or a schedule (it scales every step size).
      eta_minus: factor in (0, 1) after a sign flip; eta_plus: factor > 1 after agreement.
      min_step_size, max_step_size: bounds on each step size.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.rprop(0.1)
      >>> tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))[0]
      Array([ 0.1, -0.1], dtype=float32)

    Reference: Riedmiller & Braun, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm", ICNN 1993.
    """
    return scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
