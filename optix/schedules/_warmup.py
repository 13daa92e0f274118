"""Linear warm-up followed by a constant or by exponential decay."""

from __future__ import annotations

from jax.typing import ArrayLike

from optix import _validate
from optix._base import Schedule
from optix.schedules._basic import constant
from optix.schedules._basic import exponential_decay
from optix.schedules._basic import join
from optix.schedules._basic import linear
from optix.schedules._steps import check_value


def warmup_constant(init_value: ArrayLike, peak_value: ArrayLike, warmup_steps: int) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant.

    .. math:: v(s) = v_0 + (v_{peak} - v_0) \min(s / W, 1)

    optax's ``warmup_constant_schedule`` (same arguments). With ``warmup_steps = 0`` the value is
    ``peak_value`` from step 0, where optax's zero-length linear schedule stays at ``init_value``
    for ever; write ``constant(init_value)`` if that is what you want.

    Args:
      init_value: the value at step 0; finite and ``>= 0``.
      peak_value: the value from step ``W`` on; finite and ``>= 0``.
      warmup_steps: ``W >= 0`` (any size).

    Example:
      >>> import optix
      >>> sched = optix.schedules.warmup_constant(0.0, 1.0, 10)
      >>> [float(sched(s)) for s in (0, 5, 10, 1000)]
      [0.0, 0.5, 1.0, 1.0]

    Reference: Goyal et al., `Accurate, large minibatch SGD: training ImageNet in 1 hour
    <https://arxiv.org/abs/1706.02677>`_, 2017 (gradual warm-up).
    """
    check_value("init_value", init_value)
    check_value("peak_value", peak_value)
    _validate.check_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps == 0:
        return constant(peak_value)
    return linear(init_value, peak_value, warmup_steps)


def warmup_exponential_decay(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    r"""Linear warm-up to ``peak_value``, then :func:`exponential_decay` from it.

    .. math::
        v(s) = \begin{cases} v_0 + (v_{peak} - v_0)\, s / W & s < W \\
        v_{peak}\, r^{\max(s - W - b, 0) / T} & s \ge W \end{cases}

    with the exponent floored when ``staircase``, and ``end_value`` (when given) a floor for a
    decay (``r < 1``) or a cap for a growth. The decay's step count starts at the end of the
    warm-up, so ``transition_begin`` counts from there. optax's
    ``warmup_exponential_decay_schedule`` step for step, with the same arguments in the same order.

    Args:
      init_value: the value at step 0; finite and ``>= 0``.
      peak_value: the value at the end of the warm-up; finite and ``>= 0``.
      warmup_steps: ``W >= 0``.
      transition_steps: ``T >= 1``.
      decay_rate: ``r > 0``.
      transition_begin: ``b >= 0`` steps held at ``peak_value`` after the warm-up.
      staircase: decay in whole steps of ``T``.
      end_value: the bound of the decay, finite and ``>= 0``.

    Example:
      >>> import optix
      >>> sched = optix.schedules.warmup_exponential_decay(0.0, 1.0, 10, 10, 0.5)
      >>> [float(sched(s)) for s in (0, 5, 10, 20, 30)]
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    check_value("init_value", init_value)
    check_value("peak_value", peak_value)  # before exponential_decay calls it its init_value
    _validate.check_int("warmup_steps", warmup_steps, minimum=0)
    decay = exponential_decay(
        peak_value,
        transition_steps,
        decay_rate,
        staircase,
        transition_begin=transition_begin,
        end_value=end_value,
    )
    if warmup_steps == 0:
        return decay
    return join([linear(init_value, peak_value, warmup_steps), decay], [warmup_steps])
