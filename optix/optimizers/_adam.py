"""The Adam family of optimizers: Adam, AMSGrad, AdamW, Adamax, NAdam, RAdam."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import DTypeLike

from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._adam import scale_by_adam, scale_by_adamax, scale_by_nadam, scale_by_radam
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr


def adam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    amsgrad: bool = False,
    *,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam: steps from bias-corrected first and second moment estimates.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
        \quad \theta_t = \theta_{t-1} - \eta \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Matches torch.optim.Adam (and optax's ``adam``). With ``amsgrad=True`` the denominator uses
    the running max of ``v_t`` before bias correction, as torch does; optax's ``amsgrad`` takes the
    max after bias correction. For an L2 penalty (torch's ``Adam(weight_decay=...)``), chain
    :func:`add_decayed_weights` in front; for decoupled decay use :func:`adamw`.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2: moment decays in [0, 1).
      eps: added to the denominator.
      amsgrad: use AMSGrad's running max of the second moment.
      eps_root: added inside the root (for meta-learning through the optimizer).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optix.adam(1e-2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -0.5])}, state, params)
      >>> optix.apply_updates(params, updates)["w"]
      Array([ 0.99, -1.99], dtype=float32)

    Reference: Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015;
    Reddi, Kale & Kumar, ICLR 2018 (AMSGrad).
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-2,
    mask: Any | Callable[[Params], Any] | None = None,
    amsgrad: bool = False,
    *,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdamW: Adam with weight decay decoupled from the gradient.

    .. math:: \theta_t = \theta_{t-1} - \eta \big(\text{adam}_t + \lambda \theta_{t-1}\big)

    The decay is multiplied by the learning rate (and so follows its schedule), as in
    torch.optim.AdamW and optax's ``adamw``. For the coupled L2 form instead, use
    ``chain(add_decayed_weights(lam), adam(eta))``.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2, eps, amsgrad, eps_root, mu_dtype, nu_dtype: as in :func:`adam`.
      weight_decay: ``lambda`` >= 0.
      mask: which params decay: a pytree of bools or a function ``params -> pytree of bools``
        (commonly: decay matrices, not biases or norm scales).

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
      >>> no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
      >>> tx = optix.adamw(1e-3, weight_decay=0.05, mask=no_bias)
      >>> state = tx.init(params)

    Reference: Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )


def adamax(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
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


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    momentum_decay: ScalarOrSchedule = 4e-3,
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

    Reference: Dozat, "Incorporating Nesterov momentum into Adam", ICLR workshop 2016.
    """
    return chain(
        scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )


def radam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    threshold: ScalarOrSchedule = 5.0,
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

    Reference: Liu et al., "On the variance of the adaptive learning rate and beyond", ICLR 2020.
    """
    return chain(
        scale_by_radam(b1, b2, eps, threshold, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )
