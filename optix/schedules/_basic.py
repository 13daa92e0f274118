"""Constant, polynomial (and linear), exponential and piecewise-constant schedules, and ``join``."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _validate
from optix._base import Schedule
from optix._hyperparams import hyperparam_dtype
from optix.schedules._steps import as_float
from optix.schedules._steps import check_value
from optix.schedules._steps import elapsed
from optix.schedules._steps import length
from optix.schedules._steps import like_step
from optix.schedules._steps import periods
from optix.schedules._steps import reached
from optix.schedules._steps import sorted_boundaries_and_scales


def constant(value: ArrayLike) -> Schedule:
    """``value`` (finite, ``>= 0``) at every step.

    Example:
      >>> import optix
      >>> float(optix.schedules.constant(0.1)(1000))
      0.1...
    """
    check_value("value", value)
    return lambda step: jnp.full(jnp.shape(step), value, hyperparam_dtype())


def polynomial(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""Polynomial decay from ``init_value`` to ``end_value`` over ``transition_steps`` steps.

    .. math::
        v(s) = (v_0 - v_1) \big(1 - \tfrac{\min(\max(s - b, 0), T)}{T}\big)^p + v_1

    with ``b = transition_begin``. The value is ``init_value`` before ``b`` and ``end_value`` after
    ``b + T``. The values are finite and ``>= 0``; ``power`` is ``> 0``; ``T`` and ``b`` may
    be any size (beyond the int32 range too).

    Example:
      >>> import optix
      >>> float(optix.schedules.polynomial(1.0, 0.0, 2, 10)(5))
      0.25
    """
    check_value("init_value", init_value)
    check_value("end_value", end_value)
    _validate.check_positive("power", power)
    steps = length("transition_steps", transition_steps, minimum=1)
    length("transition_begin", transition_begin, minimum=0)

    def schedule(step):
        s = jnp.minimum(elapsed(step, transition_begin), steps)
        # (T - s) / T is exactly 0 at s = T even when XLA turns the division into a multiply by
        # 1/T; the clip keeps a fractional power away from negative bases.
        frac = jnp.clip((steps - s) / steps, 0, 1)
        return (as_float(init_value) - end_value) * frac**power + end_value

    return schedule


def linear(
    init_value: ArrayLike, end_value: ArrayLike, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps``.

    :func:`polynomial` with ``power=1``.

    Example:
      >>> import optix
      >>> float(optix.schedules.linear(0.0, 1.0, 10)(3))
      0.3...
    """
    return polynomial(init_value, end_value, 1, transition_steps, transition_begin)


def exponential_decay(
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: ArrayLike,
    staircase: bool = False,
    *,
    transition_begin: int = 0,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Exponential decay: ``init_value * decay_rate ** ((step - begin) / transition_steps)``.

    With ``staircase`` the exponent is floored, so the value drops every ``transition_steps``.
    ``end_value``, when given, bounds the value (from below when decaying, above when growing).

    Example:
      >>> import optix
      >>> float(optix.schedules.exponential_decay(1.0, 10, 0.5)(20))
      0.25
    """
    check_value("init_value", init_value)
    steps = length("transition_steps", transition_steps, minimum=1)
    _validate.check_positive("decay_rate", decay_rate)
    length("transition_begin", transition_begin, minimum=0)
    if end_value is not None:
        check_value("end_value", end_value)

    def schedule(step):
        if staircase:
            p = periods(step, transition_steps, transition_begin)
        else:
            p = elapsed(step, transition_begin) / steps
        value = as_float(init_value) * as_float(decay_rate) ** p
        if end_value is not None:
            bound = as_float(end_value)
            # `decay_rate` is a real number here: check_positive rejected anything else
            value = jnp.maximum(value, bound) if decay_rate < 1 else jnp.minimum(value, bound)  # type: ignore[operator]
        return value

    return schedule


def piecewise_constant(
    init_value: ArrayLike, boundaries_and_scales: Mapping[int, ArrayLike] | None = None
) -> Schedule:
    r"""``init_value`` times the product of every scale whose boundary the step has passed.

    .. math:: v(s) = v_0 \prod_{b_i \le s} f_i

    A boundary ``b`` takes effect at step ``b`` itself, as in optax, torch's ``MultiStepLR`` and
    :func:`join`.

    Example:
      >>> import optix
      >>> sched = optix.schedules.piecewise_constant(1.0, {10: 0.1, 20: 0.1})
      >>> [round(float(sched(s)), 4) for s in (9, 10, 20)]
      [1.0, 0.1, 0.01]
    """
    check_value("init_value", init_value)
    items = sorted_boundaries_and_scales(boundaries_and_scales)

    def schedule(step):
        s = jnp.asarray(step)
        value = jnp.full(jnp.shape(s), init_value, hyperparam_dtype())
        for b, f in items:
            value = jnp.where(reached(s, b), value * as_float(f), value)
        return value

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[i + 1]`` from step ``boundaries[i]`` on, with its step count restarted.

    .. math:: v(s) = f_{i+1}(s - b_i) \quad \text{for } b_i \le s < b_{i+1}

    Example:
      >>> import optix
      >>> warm = optix.schedules.linear(0.0, 1.0, 10)
      >>> decay = optix.schedules.exponential_decay(1.0, 10, 0.5)
      >>> sched = optix.schedules.join([warm, decay], [10])
      >>> [float(sched(s)) for s in (5, 10, 20)]
      [0.5, 1.0, 0.5]
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            f"join needs one more schedule than boundaries, got {len(schedules)} schedules "
            f"and {len(boundaries)} boundaries"
        )
    for i, f in enumerate(schedules):
        if not callable(f):
            raise TypeError(f"`schedules[{i}]` must be callable, got {f!r}")
    for b in boundaries:
        _validate.check_int("boundaries", b, minimum=0)
    if any(a >= b for a, b in zip(boundaries[:-1], boundaries[1:], strict=True)):
        raise ValueError(f"`boundaries` must be strictly increasing, got {list(boundaries)}")

    def schedule(step):
        s = jnp.asarray(step)
        is_int = jnp.issubdtype(s.dtype, jnp.integer)
        value = as_float(schedules[0](s))
        for b, f in zip(boundaries, schedules[1:], strict=True):
            if is_int and b > jnp.iinfo(s.dtype).max:
                break  # a step of this dtype never gets there, nor to any later boundary
            since = s - (like_step(b, s) if is_int else float(b))  # exact from b on, where used
            value = jnp.where(reached(s, b), as_float(f(since)), value)
        return value

    return schedule
