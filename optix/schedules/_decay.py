"""Decay schedules: warm-up/stable/decay, inverse square root, inverse time and step decay."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _validate
from optix._base import Schedule
from optix.schedules._steps import as_float as _float
from optix.schedules._steps import check_value
from optix.schedules._steps import length
from optix.schedules._steps import periods

_WSD_SHAPES = ("linear", "cosine", "sqrt")


def _warm_up(
    value: ArrayLike, s: jax.Array, peak: jax.Array, init_value: ArrayLike, steps: float
) -> jax.Array:
    """``value``, preceded by a linear warm-up from ``init_value`` to ``peak`` over ``steps``."""
    if steps == 0:
        return jnp.asarray(value)
    return jnp.where(s < steps, init_value + (peak - init_value) * s / steps, value)


def warmup_stable_decay(
    peak_value: ArrayLike,
    total_steps: int,
    warmup_steps: int,
    decay_steps: int,
    init_value: ArrayLike = 0.0,
    end_value: ArrayLike = 0.0,
    decay_shape: str = "linear",
) -> Schedule:
    r"""Warm-up, a long stable phase at the peak, then a short decay (WSD).

    Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``; ``peak_value``
    until ``total_steps - decay_steps``; then, with ``p`` the fraction of the decay done, down to
    ``end_value`` along

    .. math::
        \text{linear: } 1 - p, \qquad \text{cosine: } \tfrac12 (1 + \cos \pi p), \qquad
        \text{sqrt: } 1 - \sqrt p

    (the factor multiplies ``peak_value - end_value``). ``"sqrt"`` is the "1 - sqrt" cool-down
    that Hägele et al. found to match cosine schedules. ``end_value`` holds after ``total_steps``.

    Args:
      peak_value: the value of the stable phase.
      total_steps: the whole schedule's length.
      warmup_steps: >= 0 steps of linear warm-up.
      decay_steps: >= 1 steps of decay, ending at ``total_steps``;
        ``warmup_steps + decay_steps <= total_steps``.
      init_value: the value at step 0 (when there is a warm-up).
      end_value: the value at and after ``total_steps``.
      decay_shape: ``"linear"``, ``"cosine"`` or ``"sqrt"``.

    Example:
      >>> import optix
      >>> sched = optix.schedules.warmup_stable_decay(1.0, 100, 10, 20)
      >>> [round(float(sched(s)), 3) for s in (0, 5, 10, 80, 90, 100)]
      [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]

    Reference: Hu et al., `MiniCPM: unveiling the potential of small language models with
    scalable training strategies <https://arxiv.org/abs/2404.06395>`_, 2024; Hägele et al.,
    "Scaling laws and compute-optimal training
    beyond fixed training durations", NeurIPS 2024.
    """
    check_value("peak_value", peak_value)
    check_value("init_value", init_value)
    check_value("end_value", end_value)
    _validate.check_int("total_steps", total_steps, minimum=1)
    warmup = length("warmup_steps", warmup_steps, minimum=0)
    decay = length("decay_steps", decay_steps, minimum=1)
    _validate.check_choice("decay_shape", decay_shape, _WSD_SHAPES)
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(
            f"`warmup_steps` + `decay_steps` ({warmup_steps} + {decay_steps}) must not exceed "
            f"`total_steps` ({total_steps})"
        )
    decay_begin = float(total_steps - decay_steps)

    def schedule(step):
        s = jnp.maximum(_float(step), 0)
        peak = _float(peak_value)
        p = jnp.clip((s - decay_begin) / decay, 0, 1)
        if decay_shape == "linear":
            factor = 1 - p
        elif decay_shape == "cosine":
            factor = 0.5 * (1 + jnp.cos(math.pi * p))
        else:
            factor = 1 - jnp.sqrt(p)
        return _warm_up(end_value + (peak - end_value) * factor, s, peak, init_value, warmup)

    return schedule


def inverse_sqrt(peak_value: ArrayLike, warmup_steps: int, init_value: ArrayLike = 0.0) -> Schedule:
    r"""Linear warm-up to ``peak_value``, then decay as the inverse square root of the step.

    .. math::
        v(s) = \begin{cases} v_0 + (v_{peak} - v_0)\, s / W & s < W \\
        v_{peak} \sqrt{W / s} & s \ge W \end{cases}

    The schedule of the original Transformer (there ``v_peak = d^{-1/2} W^{-1/2}`` and
    ``v_0 = 0``) and of fairseq's ``inverse_sqrt``. With ``warmup_steps = 0`` it is
    ``v_peak / sqrt(max(s, 1))``.

    Args:
      peak_value: the value at step ``W``.
      warmup_steps: ``W`` >= 0.
      init_value: ``v_0``, the value at step 0 when ``W > 0``.

    Example:
      >>> import optix
      >>> sched = optix.schedules.inverse_sqrt(1.0, 100)
      >>> [round(float(sched(s)), 3) for s in (0, 50, 100, 400)]
      [0.0, 0.5, 1.0, 0.5]

    Reference: Vaswani et al., `Attention is all you need <https://arxiv.org/abs/1706.03762>`_,
    NeurIPS 2017 (section 5.3).
    """
    check_value("peak_value", peak_value)
    check_value("init_value", init_value)
    warmup = length("warmup_steps", warmup_steps, minimum=0)
    timescale = max(warmup, 1.0)

    def schedule(step):
        s = jnp.maximum(_float(step), 0)
        peak = _float(peak_value)
        value = peak * jnp.sqrt(timescale / jnp.maximum(s, timescale))
        return _warm_up(value, s, peak, init_value, warmup)

    return schedule


def inverse_time_decay(
    init_value: ArrayLike,
    decay_rate: ArrayLike,
    decay_steps: int = 1,
    staircase: bool = False,
) -> Schedule:
    r"""Decay inversely proportional to time.

    .. math:: v(s) = \frac{v_0}{1 + r\, s / T}

    with ``s / T`` rounded down when ``staircase`` (as in Keras' ``InverseTimeDecay``). With
    ``T = 1`` it is the classic ``eta_0 / (1 + r t)`` of stochastic approximation.

    Args:
      init_value: ``v_0``.
      decay_rate: ``r`` >= 0.
      decay_steps: ``T`` >= 1.
      staircase: decay in whole steps of ``T``.

    Example:
      >>> import optix
      >>> sched = optix.schedules.inverse_time_decay(1.0, 0.5, decay_steps=10)
      >>> [round(float(sched(s)), 3) for s in (0, 10, 20, 60)]
      [1.0, 0.667, 0.5, 0.25]

    Reference: Robbins & Monro, `A stochastic approximation method
    <https://doi.org/10.1214/aoms/1177729586>`_, 1951 (the ``1/t`` rate).
    """
    check_value("init_value", init_value)
    _validate.check_nonnegative("decay_rate", decay_rate)
    steps = length("decay_steps", decay_steps, minimum=1)

    def schedule(step):
        p = periods(step, decay_steps) if staircase else jnp.maximum(_float(step), 0) / steps
        return _float(init_value) / (1 + decay_rate * p)

    return schedule


def step_decay(init_value: ArrayLike, step_size: int, gamma: ArrayLike = 0.1) -> Schedule:
    r"""Multiply by ``gamma`` every ``step_size`` steps.

    .. math:: v(s) = v_0\, \gamma^{\lfloor s / T \rfloor}

    torch.optim.lr_scheduler.StepLR. For uneven boundaries use :func:`piecewise_constant`.

    Args:
      init_value: ``v_0``.
      step_size: ``T`` >= 1.
      gamma: the factor, >= 0.

    Example:
      >>> import optix
      >>> sched = optix.schedules.step_decay(1.0, 30, gamma=0.1)
      >>> [round(float(sched(s)), 4) for s in (0, 29, 30, 60)]
      [1.0, 1.0, 0.1, 0.01]
    """
    check_value("init_value", init_value)
    _validate.check_int("step_size", step_size, minimum=1)
    _validate.check_nonnegative("gamma", gamma)

    def schedule(step):
        drops = periods(step, step_size)
        return _float(init_value) * _float(gamma) ** drops

    return schedule
