"""Schedule-free SGD and AdamW: no learning-rate decay, evaluate at the averaged params."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import DTypeLike

from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._schedule_free import scale_by_debiased_rms, schedule_free


def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    warmup_steps: int = 0,
    b1: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_lr_power: ScalarOrSchedule = 2.0,
    *,
    mask: Any | Callable[[Params], Any] | None = None,
    z_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Schedule-free SGD: momentum replaced by interpolation and averaging, no lr decay needed.

    .. math::
        y_t = \beta_1 x_t + (1-\beta_1) z_t, \quad
        z_{t+1} = z_t - \gamma_t (\nabla f(y_t) + \lambda y_t), \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with ``gamma_t = learning_rate * min(1, t / warmup_steps)`` and ``c_{t+1} = gamma_max^r /
    sum_i gamma_max,i^r`` (see :func:`optix.schedule_free`). The params the training loop holds
    are ``y``; evaluate at ``x = optix.schedule_free_eval_params(state, params)``. Matches
    ``optax.contrib.schedule_free_sgd`` without warmup; with warmup, optix follows the authors'
    reference code (both the ``z`` step and the averaging weight use ``gamma_t``, where optax's
    step uses ``gamma_{t-1}``). Weight decay is taken at ``y`` and scaled by ``gamma_t``, as in
    the reference code and optax.

    Args:
      learning_rate: ``gamma`` >= 0 or a schedule (no decay needed).
      warmup_steps: length of the linear warmup (0: none).
      b1: interpolation ``beta_1`` in (0, 1); 0.9 by default, 0.95 or 0.98 also work well.
      weight_decay: ``lambda`` >= 0.
      weight_lr_power: ``r`` >= 0, the power of the learning rate in the averaging weights.
      mask: which params decay (a pytree of bools or a function of the params).
      z_dtype: dtype of the ``z`` sequence; default: at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum(p**2)
      >>> tx = optix.schedule_free_sgd(0.1)
      >>> params = jnp.array([1.0, 2.0])
      >>> state = tx.init(params)
      >>> for _ in range(100):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> bool(loss(optix.schedule_free_eval_params(state, params)) < 1e-2)
      True

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The road less scheduled",
    NeurIPS 2024.
    """
    return schedule_free(
        add_decayed_weights(weight_decay, mask),
        learning_rate,
        b1,
        weight_lr_power,
        warmup_steps=warmup_steps,
        z_dtype=z_dtype,
    )


def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    warmup_steps: int = 0,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_lr_power: ScalarOrSchedule = 2.0,
    *,
    mask: Any | Callable[[Params], Any] | None = None,
    nu_dtype: DTypeLike | None = None,
    z_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Schedule-free AdamW: Adam's second-moment scaling without momentum, made schedule-free.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        z_{t+1} = z_t - \gamma_t \Bigl(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
        + \lambda y_t\Bigr), \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with ``g_t`` the gradient at ``y_t = beta_1 x_t + (1 - beta_1) z_t`` (the params the
    training loop holds), ``gamma_t = learning_rate * min(1, t / warmup_steps)`` and ``c_{t+1}``
    as in :func:`optix.schedule_free`. Evaluate at ``optix.schedule_free_eval_params(state,
    params)``. The bias correction sits inside the root and ``eps`` outside, as in the authors'
    current reference code and ``optax.contrib.schedule_free_adamw`` (which optix matches without
    warmup; see :func:`schedule_free_sgd` for the warmup difference). The paper's Algorithm 1
    instead folds ``sqrt(1 - beta_2^t)`` into ``gamma_t`` (and so into the averaging weights).

    Args:
      learning_rate: ``gamma`` >= 0 or a schedule (no decay needed).
      warmup_steps: length of the linear warmup (0: none).
      b1: interpolation ``beta_1`` in (0, 1).
      b2: second-moment decay in [0, 1).
      eps: added to the root of the second moment.
      weight_decay: ``lambda`` >= 0, decoupled, taken at ``y``.
      weight_lr_power: ``r`` >= 0, the power of the learning rate in the averaging weights.
      mask: which params decay (a pytree of bools or a function of the params).
      nu_dtype: dtype of the second moment; z_dtype: dtype of ``z`` (default: at least float32).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.schedule_free_adamw(1e-3, warmup_steps=100, weight_decay=1e-4)
      >>> params = {"w": jnp.zeros((2, 2))}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params)

    Reference: Defazio et al., "The road less scheduled", NeurIPS 2024.
    """
    direction = chain(
        scale_by_debiased_rms(b2, eps, nu_dtype=nu_dtype), add_decayed_weights(weight_decay, mask)
    )
    return schedule_free(
        direction, learning_rate, b1, weight_lr_power, warmup_steps=warmup_steps, z_dtype=z_dtype
    )
