"""Memory-saving adaptive optimizers with sublinear second-moment statistics: Adafactor and SM3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.transforms._adafactor import (
    adafactor_momentum,
    scale_by_factored_rms,
    scale_by_param_block_rms,
)
from optix.transforms._blockclip import clip_by_block_rms
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr
from optix.transforms._sm3 import scale_by_sm3


def adafactor(
    learning_rate: ScalarOrSchedule,
    min_dim_size_to_factor: int = 128,
    decay_rate: ScalarOrSchedule = 0.8,
    decay_offset: ScalarOrSchedule = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: ScalarOrSchedule | None = 1.0,
    momentum: ScalarOrSchedule | None = None,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any | Callable[[Params], Any] | None = None,
    *,
    eps_scale: ScalarOrSchedule = 1e-3,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adafactor: factored second moments, update clipping and a step relative to the params.

    With ``beta_t = 1 - (t - offset)^(-decay_rate)`` and ``G_t = |g_t|^2 + eps``:

    .. math::
        \hat V_t = \begin{cases} R_t C_t / \operatorname{mean}(R_t) & \text{factored leaf} \\
        \beta_t \hat V_{t-1} + (1-\beta_t) G_t & \text{otherwise} \end{cases}, \quad
        U_t = \frac{g_t}{\sqrt{\hat V_t}}, \quad
        \hat U_t = \frac{U_t}{\max(1, \mathrm{rms}(U_t) / d)}, \\
        \theta_t = \theta_{t-1} - \eta_t \max(\epsilon_2, \mathrm{rms}(\theta_{t-1}))
        \, \hat U_t

    where ``R_t``, ``C_t`` are running means of ``G_t`` over the largest and the second-largest
    axis of a leaf (factored only when that second-largest axis has at least
    ``min_dim_size_to_factor`` elements; see :func:`scale_by_factored_rms`), ``d`` is
    ``clipping_threshold`` and ``epsilon_2 = eps_scale``. The chain is
    :func:`scale_by_factored_rms`, :func:`clip_by_block_rms`, :func:`scale_by_param_block_rms`,
    optional :func:`adafactor_momentum` (an EMA without bias correction), optional
    :func:`add_decayed_weights`, :func:`scale_lr`. With the defaults this is ``optax.adafactor``
    exactly.

    Differences from optax, both from optix's rule that the learning rate is applied last:

    - ``weight_decay_rate`` is multiplied by the learning rate (``theta -= eta (U + lambda
      theta)``, as in torch.optim.Adafactor and AdamW); optax subtracts ``lambda theta``
      unscaled. For a constant rate, optix's ``lambda`` equals optax's divided by ``eta``.
    - With ``momentum`` and a learning-rate *schedule*, the EMA averages directions and the
      current rate scales the result; optax averages already-scaled steps. They agree for a
      constant rate.

    The paper's relative step size ``min(1e-2, 1/sqrt(t))`` is the schedule
    ``lambda count: jnp.minimum(1e-2, 1 / jnp.sqrt(count + 1))``.

    Args:
      learning_rate: ``eta``, the (relative, with ``multiply_by_parameter_scale``) step size.
      min_dim_size_to_factor: the second-largest axis a leaf needs to be factored.
      decay_rate: exponent of the second-moment decay schedule (0.8).
      decay_offset: step offset of that schedule (for fine-tuning).
      multiply_by_parameter_scale: scale steps by ``max(eps_scale, rms(theta))``.
      clipping_threshold: ``d`` >= 0 for update clipping, or None for no clipping.
      momentum: EMA decay in [0, 1) of the updates, or None (the default) for none.
      weight_decay_rate: ``lambda`` >= 0, decoupled and scaled by the learning rate, or None.
      eps: ``epsilon_1`` added to the squared gradients (1e-30).
      factored: False keeps full second moments for every leaf.
      weight_decay_mask: which params decay; default all.
      eps_scale: ``epsilon_2``, the smallest param scale (1e-3).
      mu_dtype: dtype of the momentum buffer; nu_dtype: of the second-moment statistics.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adafactor(1e-2)
      >>> params = {"w": jnp.ones((256, 512)), "b": jnp.zeros(512)}
      >>> state = tx.init(params)
      >>> state[0].v_row["w"].shape, state[0].v_col["w"].shape, state[0].v["b"].shape
      ((256,), (512,), (512,))

    Reference: Shazeer & Stern, "Adafactor: adaptive learning rates with sublinear memory cost",
    ICML 2018.
    """
    # checked here, under the names the caller wrote (the transforms name them differently)
    if clipping_threshold is not None:
        _validate.check_nonnegative("clipping_threshold", clipping_threshold)
    if weight_decay_rate is not None:
        _validate.check_nonnegative("weight_decay_rate", weight_decay_rate)
    _validate.check_nonnegative("eps_scale", eps_scale)
    parts = [
        scale_by_factored_rms(
            decay_rate,
            decay_offset,
            eps,
            factored=factored,
            min_dim_size_to_factor=min_dim_size_to_factor,
            nu_dtype=nu_dtype,
        )
    ]
    if clipping_threshold is not None:
        parts.append(clip_by_block_rms(clipping_threshold))
    if multiply_by_parameter_scale:
        parts.append(scale_by_param_block_rms(eps_scale))
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    if momentum is not None:
        parts.append(adafactor_momentum(momentum, mu_dtype=mu_dtype))
    if weight_decay_rate is not None:
        parts.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    parts.append(scale_lr(learning_rate))
    return chain(*parts)


def sm3(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule = 0.9,
    *,
    eps: ScalarOrSchedule = 1e-8,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""SM3: Adagrad-like steps from one accumulator per slice of each axis (sublinear memory).

    .. math::
        \nu_t(i) = \min_{a} \mu_{a,t-1}(i_a) + g_t(i)^2, \quad
        \mu_{a,t}(j) = \max_{i:\, i_a = j} \nu_t(i), \quad
        m_t = \beta m_{t-1} + (1-\beta) \frac{g_t}{\sqrt{\nu_t + \epsilon}}, \quad
        \theta_t = \theta_{t-1} - \eta \, m_t

    A ``(n, k)`` matrix keeps ``n + k`` accumulators, a vector one per element, a scalar one.
    See :func:`scale_by_sm3`. Matches ``optax.sm3`` wherever optax runs; optax 0.2.8 fails on
    scalar leaves, which optix handles as a single accumulator (Adagrad on that scalar).

    Args:
      learning_rate: step size >= 0, or a schedule (optax takes a constant only).
      momentum: ``beta`` in [0, 1).
      eps: >= 0, inside the root.
      mu_dtype, nu_dtype: dtypes of the momentum and the accumulators.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.sm3(0.1)
      >>> state = tx.init({"w": jnp.ones((4, 5)), "s": jnp.ones(())})
      >>> [a.shape for a in state[0].nu["w"]], [a.shape for a in state[0].nu["s"]]
      ([(4,), (5,)], [()])

    Reference: Anil, Gupta, Koren & Singer, "Memory-efficient adaptive optimization", NeurIPS
    2019.
    """
    return chain(
        scale_by_sm3(momentum, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )
