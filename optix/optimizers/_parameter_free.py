"""Learning-rate-free Adam: Prodigy and D-Adaptation, which estimate the step size as they go."""

from __future__ import annotations

from jax.typing import ArrayLike, DTypeLike

from optix._base import GradientTransformation, ScalarOrSchedule
from optix.transforms._dadapt import Mask, scale_by_dadapt_adam, scale_by_prodigy


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    beta3: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    estim_lr_coef: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: Mask = None,
    safeguard_warmup: bool = False,
    bias_correction: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Prodigy: AdamW whose base step size ``d`` is estimated on the fly (learning-rate free).

    .. math::
        \eta_t = d_t \, \mathrm{lr}_t \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) d_t g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t^2 g_t^2,

    .. math::
        r_t = \beta_3 r_{t-1} + \tfrac{d_t}{d_0} \eta_t \langle g_t, x_0 - x_t \rangle, \quad
        s_t = \beta_3 s_{t-1} + \tfrac{d_t}{d_0} \eta_t g_t, \quad
        d_{t+1} = \max\Bigl(d_t, \; c \frac{r_t}{\lVert s_t \rVert_1}\Bigr),

    .. math::
        x_{t+1} = x_t - \eta_t \Bigl(\frac{m_t}{\sqrt{v_t} + d_{t+1} \epsilon}
        + \lambda x_t\Bigr)

    with ``beta_3 = sqrt(beta_2)`` by default, ``d_0 = estim_lr0``, ``c = estim_lr_coef`` and the
    sums and norms taken over all leaves together (accumulated in float32 or wider). The
    ``learning_rate`` is a multiplier of the estimated step (keep it 1, or use a schedule that
    starts at 1, e.g. a cosine decay with warmup). Matches ``optax.contrib.prodigy`` and the
    authors' code with decoupled decay. Two deliberate differences: while ``||s_t||_1 = 0`` (only
    zero gradients so far) ``d`` is kept, where optax divides 0 by 0 and turns every later step
    into NaN; and ``bias_correction=False`` gives the authors' default (no Adam bias correction)
    while the default ``True`` follows optax.

    Args:
      learning_rate: multiplier of the estimated step (>= 0), or a schedule.
      b1, b2: Adam's moment decays in [0, 1).
      beta3: decay of the ``d`` estimate's sums in [0, 1); default ``sqrt(b2)``.
      eps: added to the denominator, scaled by ``d``.
      estim_lr0: the initial (under-)estimate ``d_0`` > 0.
      estim_lr_coef: ``c`` >= 0, multiplies every estimate of ``d``.
      weight_decay: ``lambda`` >= 0, decoupled (AdamW), scaled by ``eta_t``.
      mask: which params decay (a pytree of bools or a function of the params).
      safeguard_warmup: use ``d_t`` in place of ``eta_t`` in ``s_t``, which keeps a warmup
        schedule's small early rates from inflating the estimate.
      bias_correction: fold Adam's bias correction into ``eta_t``.
      mu_dtype, nu_dtype: dtypes of the moments (``mu_dtype`` also for ``s``).

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
      >>> tx = optix.prodigy()
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> for _ in range(200):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = optix.apply_updates(params, updates)
      >>> bool(loss(params) < 1e-2)
      True

    Reference: Mishchenko & Defazio, "Prodigy: an expeditiously adaptive parameter-free
    learner", ICML 2024.
    """
    return scale_by_prodigy(
        learning_rate,
        b1,
        b2,
        beta3,
        eps,
        estim_lr0,
        estim_lr_coef,
        weight_decay,
        mask=mask,
        safeguard_warmup=safeguard_warmup,
        bias_correction=bias_correction,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mask: Mask = None,
    bias_correction: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""D-Adapt AdamW: Adam whose step size ``d`` is estimated by D-Adaptation.

    .. math::
        \eta_t = d_t \, \mathrm{lr}_t \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}, \quad
        r_t = \sqrt{\beta_2}\, r_{t-1} + (1-\sqrt{\beta_2})\, \eta_t
        \Bigl\langle g_t, \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon} \Bigr\rangle,

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) \eta_t g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        s_t = \sqrt{\beta_2}\, s_{t-1} + (1-\sqrt{\beta_2})\, \eta_t g_t,

    .. math::
        d_{t+1} = \max\Bigl(d_t, \frac{r_t}{(1-\sqrt{\beta_2}) \lVert s_t \rVert_1}\Bigr),
        \quad x_{t+1} = x_t - \frac{m_t}{\sqrt{v_t} + \epsilon} - \lambda \eta_t x_t

    with the inner product and norm over all leaves together (accumulated in float32 or wider).
    The ``learning_rate`` multiplies the estimated step (keep it 1, or a schedule starting at 1).
    Matches ``optax.contrib.dadapt_adamw`` (the authors' ``DAdaptAdam`` with decoupled decay and
    bias correction). As for :func:`optix.prodigy`, ``d`` is kept while ``||s_t||_1 = 0``, where
    optax produces NaN; ``bias_correction=False`` is the authors' default.

    Args:
      learning_rate: multiplier of the estimated step (>= 0), or a schedule.
      b1, b2: Adam's moment decays in [0, 1).
      eps: added to the root of the second moment.
      estim_lr0: the initial (under-)estimate ``d_0`` > 0.
      weight_decay: ``lambda`` >= 0, decoupled, scaled by ``eta_t``.
      mask: which params decay (a pytree of bools or a function of the params).
      bias_correction: fold Adam's bias correction into ``eta_t``.
      mu_dtype, nu_dtype: dtypes of the moments (``mu_dtype`` also for ``s``).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.dadapt_adamw(weight_decay=1e-4)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)

    Reference: Defazio & Mishchenko, "Learning-rate-free learning by D-Adaptation", ICML 2023.
    """
    return scale_by_dadapt_adam(
        learning_rate,
        b1,
        b2,
        eps,
        estim_lr0,
        weight_decay,
        mask=mask,
        bias_correction=bias_correction,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
