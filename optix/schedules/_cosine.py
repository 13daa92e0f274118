"""Cosine decay, with and without linear warm-up."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _validate
from optix._base import Schedule
from optix.schedules._basic import join
from optix.schedules._basic import linear
from optix.schedules._steps import as_float
from optix.schedules._steps import check_value
from optix.schedules._steps import length


def _cosine(init_value: ArrayLike, steps: float, alpha: ArrayLike, exponent: ArrayLike) -> Schedule:
    """The cosine decay itself, arguments already checked."""

    def schedule(step):
        s = jnp.minimum(as_float(step), steps)
        cosine = 0.5 * (1 + jnp.cos(math.pi * s / steps))
        return as_float(init_value) * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


def cosine_decay(
    init_value: ArrayLike, decay_steps: int, alpha: ArrayLike = 0.0, exponent: ArrayLike = 1.0
) -> Schedule:
    r"""Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``.

    .. math::
        v(s) = v_0 \Big((1-\alpha) \big(\tfrac12 (1 + \cos(\pi \min(s, T) / T))\big)^p
        + \alpha\Big)

    with ``init_value`` finite and ``>= 0``, ``alpha`` in ``[0, 1]`` and ``exponent > 0``.
    ``decay_steps`` may be any size (beyond the int32 range too).

    Example:
      >>> import optix
      >>> float(optix.schedules.cosine_decay(1.0, 100)(50))
      0.5
    """
    check_value("init_value", init_value)
    steps = length("decay_steps", decay_steps, minimum=1)
    _validate.check_closed_unit_interval("alpha", alpha)
    _validate.check_positive("exponent", exponent)
    return _cosine(init_value, steps, alpha, exponent)


def warmup_cosine_decay(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the whole schedule, warm-up included (optax's convention): the value
    reaches ``end_value`` at step ``decay_steps`` and stays there.

    Example:
      >>> import optix
      >>> sched = optix.schedules.warmup_cosine_decay(0.0, 1.0, 10, 110)
      >>> [round(float(sched(s)), 3) for s in (0, 5, 10, 60, 110)]
      [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    check_value("init_value", init_value)
    check_value("peak_value", peak_value)
    check_value("end_value", end_value)
    _validate.check_positive("exponent", exponent)
    _validate.check_int("warmup_steps", warmup_steps, minimum=0)
    _validate.check_int("decay_steps", decay_steps, minimum=1)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"`decay_steps` ({decay_steps}) counts the warm-up too, so it must exceed "
            f"`warmup_steps` ({warmup_steps})"
        )
    if _validate.concrete_float(peak_value) == 0.0:
        raise ValueError("`peak_value` must be non-zero (the decay is expressed relative to it)")
    alpha = as_float(end_value) / peak_value  # may exceed 1: a cosine rise from peak to end
    decay = _cosine(peak_value, float(decay_steps - warmup_steps), alpha, exponent)
    if warmup_steps == 0:
        return decay
    return join([linear(init_value, peak_value, warmup_steps), decay], [warmup_steps])
