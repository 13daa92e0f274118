"""Cosine decay, with and without linear warm-up."""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _validate
from optix._base import Schedule
from optix._hyperparams import hyperparam_dtype
from optix.schedules._basic import join, linear


def cosine_decay(
    init_value: ArrayLike, decay_steps: int, alpha: ArrayLike = 0.0, exponent: ArrayLike = 1.0
) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``.

    .. math::
        v(s) = v_0 \\Big((1-\\alpha) \\big(\\tfrac12 (1 + \\cos(\\pi \\min(s, T) / T))\\big)^p
        + \\alpha\\Big)

    Example:
      >>> import optix
      >>> float(optix.schedules.cosine_decay(1.0, 100)(50))
      0.5
    """
    _validate.check_finite("init_value", init_value)
    _validate.check_int("decay_steps", decay_steps, minimum=1)
    _validate.check_finite("alpha", alpha)
    _validate.check_positive("exponent", exponent)

    def schedule(step):
        s = jnp.minimum(jnp.asarray(step, hyperparam_dtype()), decay_steps)
        cosine = 0.5 * (1 + jnp.cos(math.pi * s / decay_steps))
        return jnp.asarray(init_value, hyperparam_dtype()) * (
            (1 - alpha) * cosine**exponent + alpha
        )

    return schedule


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
    _validate.check_finite("peak_value", peak_value)
    _validate.check_finite("end_value", end_value)
    _validate.check_int("warmup_steps", warmup_steps, minimum=0)
    _validate.check_int("decay_steps", decay_steps, minimum=1)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"`decay_steps` ({decay_steps}) counts the warm-up too, so it must exceed "
            f"`warmup_steps` ({warmup_steps})"
        )
    if _validate.concrete_float(peak_value) == 0.0:
        raise ValueError("`peak_value` must be non-zero (the decay is expressed relative to it)")
    alpha = jnp.asarray(end_value, hyperparam_dtype()) / peak_value
    decay = cosine_decay(peak_value, decay_steps - warmup_steps, alpha, exponent)
    if warmup_steps == 0:
        return decay
    return join([linear(init_value, peak_value, warmup_steps), decay], [warmup_steps])
