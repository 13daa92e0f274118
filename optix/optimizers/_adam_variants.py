"""Adam variants as optimizers: AdaBelief, Yogi, ADOPT, AdEMAMix, Adan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import ArrayLike, DTypeLike

from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._adam_variants import (
    adopt_clip_schedule,
    scale_by_adabelief,
    scale_by_adopt,
    scale_by_yogi,
)
from optix.transforms._adan import scale_by_adan
from optix.transforms._ademamix import alpha_warmup, b3_warmup, scale_by_ademamix
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdaBelief: Adam whose denominator tracks the deviation of the gradient from its mean.

    .. math::
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \quad
        \theta_t = \theta_{t-1} - \eta \frac{m_t / (1-\beta_1^t)}
        {\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    A gradient close to its running mean ("believed") gets a large step, a surprising one a small
    step. See :func:`scale_by_adabelief`; matches optax's ``adabelief``.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2: moment decays in [0, 1).
      eps, eps_root: added outside the root, and to ``s_t`` at every step.
      nesterov: Nesterov form of the numerator (optax's option).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optix.adabelief(1e-2)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -0.5])}, tx.init(params))
      >>> updates["w"]  # first step: m_hat = g, s_hat = (0.9 g)^2, so the step is lr / 0.9
      Array([-0.01111111,  0.01111111], dtype=float32)

    Reference: Zhuang et al., "AdaBelief optimizer: adapting stepsizes by the belief in observed
    gradients", NeurIPS 2020.
    """
    return chain(
        scale_by_adabelief(
            b1, b2, eps, eps_root, nesterov=nesterov, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        scale_lr(learning_rate),
    )


def yogi(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-3,
    *,
    eps_root: ScalarOrSchedule = 0.0,
    initial_accumulator_value: ArrayLike = 1e-6,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Yogi: Adam with an additive second-moment update, so the step cannot grow abruptly.

    .. math::
        v_t = v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2, \quad
        \theta_t = \theta_{t-1} - \eta \frac{m_t / (1-\beta_1^t)}
        {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    See :func:`scale_by_yogi` (both moments start at ``initial_accumulator_value`` and are
    bias-corrected, as in optax's ``yogi``).

    Args:
      learning_rate: step size >= 0, or a schedule (the paper recommends 1e-2).
      b1, b2: moment decays in [0, 1).
      eps: added outside the root (1e-3 in the paper); eps_root: inside it.
      initial_accumulator_value: starting value of both moments.
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.yogi(1e-2)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Zaheer et al., "Adaptive methods for nonconvex optimization", NeurIPS 2018.
    """
    return chain(
        scale_by_yogi(
            b1,
            b2,
            eps,
            eps_root,
            initial_accumulator_value=initial_accumulator_value,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_lr(learning_rate),
    )


def adopt(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: ScalarOrSchedule = 1e-6,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Mask = None,
    *,
    clip_value: ScalarOrSchedule | None = adopt_clip_schedule,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""ADOPT: Adam with the gradient normalised by the previous second moment, then averaged.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
        \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, t^{1/4}\Big), \quad
        \theta_t = \theta_{t-1} - \eta\,(m_t + \lambda \theta_{t-1})

    See :func:`scale_by_adopt`; the first step only initialises ``v_0 = g_0^2`` and does not move
    the params (except by weight decay). Without ``weight_decay`` this is optax.contrib's
    ``adopt``. With it, the decay is decoupled and multiplied by the learning rate, as in
    :func:`adamw` (the authors' ``decouple=True`` option); the params are then needed.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2: decays in [0, 1) (ADOPT converges for any ``b2``; 0.9999 is the paper's).
      eps: floor of the denominator.
      weight_decay: decoupled decay ``lambda`` >= 0, or None for none.
      mask: which params decay (see :func:`adamw`).
      clip_value: clipping threshold: a schedule of the count (default ``t^(1/4)``), a
        constant, or None.
      nesterov: Nesterov form of the momentum (optax's option).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adopt(1e-3)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Taniguchi et al., "ADOPT: modified Adam can converge with any beta2 with the
    optimal rate", NeurIPS 2024.
    """
    scaling = scale_by_adopt(
        b1,
        b2,
        eps,
        clip_value=clip_value,
        nesterov=nesterov,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    if weight_decay is None:
        return chain(scaling, scale_lr(learning_rate))
    return chain(scaling, add_decayed_weights(weight_decay, mask), scale_lr(learning_rate))


def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    alpha_warmup_steps: int | None = None,
    b3_warmup_steps: int | None = None,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdEMAMix: AdamW with a very slow second momentum added to the numerator.

    .. math::
        \theta_t = \theta_{t-1} - \eta \Big(
        \frac{\hat m^{(1)}_t + \alpha\, m^{(2)}_t}{\sqrt{\hat\nu_t} + \epsilon}
        + \lambda \theta_{t-1}\Big)

    See :func:`scale_by_ademamix`. Decoupled weight decay is multiplied by the learning rate, as
    in :func:`adamw` and optax.contrib's ``ademamix``, which this matches.

    The paper warms ``alpha`` and ``b3`` up over ``T`` steps (usually the whole run):
    ``alpha_warmup_steps=T`` grows ``alpha`` linearly from 0, and ``b3_warmup_steps=T`` grows the
    half-life of the slow EMA linearly from that of ``b1`` to that of ``b3``. Both need constant
    ``alpha``, ``b1`` and ``b3``; without them (the default, as in optax) both are constant.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, b3: decays of the fast EMA, the second moment and the slow EMA.
      alpha: weight of the slow EMA (a number or a schedule).
      alpha_warmup_steps, b3_warmup_steps: lengths of the paper's warmups, or None.
      eps: added outside the root; eps_root: inside it.
      weight_decay: decoupled decay ``lambda`` >= 0.
      mask: which params decay (see :func:`adamw`).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.ademamix(1e-3, weight_decay=0.1, alpha_warmup_steps=10_000, b3_warmup_steps=10_000)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Pagliardini, Ablin & Grangier, "The AdEMAMix optimizer: better, faster, older",
    2024 (arXiv:2409.03137).
    """
    if alpha_warmup_steps is not None:
        alpha = alpha_warmup(alpha, alpha_warmup_steps, steps_name="alpha_warmup_steps")
    if b3_warmup_steps is not None:
        b3 = b3_warmup(b3, b3_warmup_steps, b1, steps_name="b3_warmup_steps")
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )


def adan(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.98,
    b2: ScalarOrSchedule = 0.92,
    b3: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adan: adaptive Nesterov momentum estimated from gradient differences.

    .. math::
        \theta_t = \theta_{t-1} - \eta \Big(
        \frac{\hat m_t + \beta_2 \hat v_t}{\sqrt{\hat n_t} + \epsilon}
        + \lambda \theta_{t-1}\Big)

    See :func:`scale_by_adan` for the moments. The difference term is weighted by ``b2`` as in
    the paper and the authors' code; optax 0.2.8's ``adan`` weights it by ``1 - b2`` (the two
    agree only at ``b2 = 0.5``). The decay is the decoupled form ``theta (1 - eta lambda)``
    (the authors' ``no_prox=True``); the paper's proximal form divides by ``1 + eta lambda``
    instead, which differs at second order in ``eta lambda``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, b3: decays in [0, 1) (0.98, 0.92, 0.99: the paper's 0.02, 0.08, 0.01).
      eps: added outside the root; eps_root: inside it.
      weight_decay: decoupled decay ``lambda`` >= 0 (the authors use 0.02 for ViTs).
      mask: which params decay (see :func:`adamw`).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adan(1e-3, weight_decay=0.02)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Xie et al., "Adan: adaptive Nesterov momentum algorithm for faster optimizing
    deep models", IEEE TPAMI 2024 (arXiv:2208.06677).
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
