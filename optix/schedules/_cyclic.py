"""Schedules that cycle: one-cycle, cosine annealing with warm restarts (SGDR) and cyclical
rates."""

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

_ANNEALS = ("cosine", "linear")
_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def anneal_between(start: jax.Array, end: jax.Array, frac: jax.Array, kind: str) -> jax.Array:
    """From ``start`` (``frac = 0``) to ``end`` (``frac = 1``), by a half cosine or a line."""
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1 + jnp.cos(math.pi * frac))
    return start + (end - start) * frac


def one_cycle(
    total_steps: int,
    peak_value: ArrayLike,
    pct_start: ArrayLike = 0.3,
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
    *,
    anneal: str = "cosine",
    three_phase: bool = False,
) -> Schedule:
    r"""The one-cycle policy: up from ``peak / div_factor`` to ``peak``, then down far below.

    With ``v_0 = peak_value / div_factor`` and ``v_min = v_0 / final_div_factor``, the value
    anneals from ``v_0`` to ``peak_value`` over steps ``[0, e_1]`` with ``e_1 = pct_start T - 1``,
    then from ``peak_value`` to ``v_min`` over ``[e_1, T - 1]``; it stays at ``v_min`` after.
    With ``three_phase=True`` the middle phase goes back to ``v_0`` by ``2 e_1`` and a third phase
    goes on to ``v_min``. Each phase is a half cosine (``anneal="cosine"``)

    .. math:: v = v_{end} + \tfrac12 (v_{start} - v_{end}) (1 + \cos \pi p)

    or a straight line (``anneal="linear"``), with ``p`` the fraction of the phase done.

    This is torch.optim.lr_scheduler.OneCycleLR, step for step. optax's
    ``cosine_onecycle_schedule`` puts the phase boundaries one step later (``pct_start T`` and
    ``T``), and its ``linear_onecycle_schedule`` is a different, four-piece policy: optix has it
    as :func:`linear_onecycle`.

    Args:
      total_steps: ``T``, the length of the cycle, >= 2.
      peak_value: the largest value, reached at step ``e_1``.
      pct_start: fraction of ``T`` spent going up; ``pct_start * T`` must exceed 1.
      div_factor: ``peak_value / v_0`` (> 0).
      final_div_factor: ``v_0 / v_min`` (> 0).
      anneal: ``"cosine"`` or ``"linear"``.
      three_phase: go back down to ``v_0`` before the final annealing.

    Example:
      >>> import optix
      >>> sched = optix.schedules.one_cycle(100, 1.0, pct_start=0.25, anneal="linear")
      >>> [round(float(sched(s)), 4) for s in (0, 24, 99)]
      [0.04, 1.0, 0.0]

    Reference: Smith & Topin, `Super-convergence: very fast training of neural networks using
    large learning rates <https://arxiv.org/abs/1708.07120>`_, 2019.
    """
    length("total_steps", total_steps, minimum=2)
    check_value("peak_value", peak_value)
    _validate.check_positive("div_factor", div_factor)
    _validate.check_positive("final_div_factor", final_div_factor)
    _validate.check_choice("anneal", anneal, _ANNEALS)
    pct = _validate.concrete_float(pct_start)  # it places the phase boundaries: must be concrete
    if pct is None:
        raise TypeError(f"`pct_start` must be a concrete number; got {pct_start!r}")
    pct_start = pct
    if not 0.0 < pct_start < 1.0 or pct_start * total_steps <= 1.0:
        raise ValueError(
            f"`pct_start` must be in (0, 1) with `pct_start * total_steps` > 1 so that the warm-up "
            f"has at least one step; got pct_start={pct_start}, total_steps={total_steps}"
        )
    up_end = pct_start * total_steps - 1
    last = float(total_steps - 1)
    if three_phase:
        ends = [up_end, 2 * up_end, last]
        if not 2 * up_end < last:
            raise ValueError(f"`pct_start` must be below 0.5 with `three_phase`; got {pct_start}")
    else:
        ends = [up_end, last]

    def schedule(step):
        peak = _float(peak_value)
        low = peak / div_factor
        final = low / final_div_factor
        values = [low, peak, low, final] if three_phase else [low, peak, final]
        s = jnp.clip(_float(step), 0, last)
        begins = [0.0, *ends[:-1]]
        out = final * jnp.ones_like(s)
        # From the last phase back to the first, so that the earliest phase not yet over wins.
        for i in reversed(range(len(ends))):
            frac = (s - begins[i]) / (ends[i] - begins[i])
            out = jnp.where(
                s <= ends[i], anneal_between(values[i], values[i + 1], frac, anneal), out
            )
        return out

    return schedule


def sgdr(
    init_value: ArrayLike,
    first_period: int,
    period_mult: int = 1,
    min_value: ArrayLike = 0.0,
    peak_decay: ArrayLike = 1.0,
) -> Schedule:
    r"""Cosine annealing with warm restarts (SGDR).

    Cycle ``i`` lasts ``T_i = T_0 m^i`` steps. Within it, at step ``t`` since the restart,

    .. math:: v = v_{min} + \tfrac12 (d^{\,i} v_0 - v_{min}) (1 + \cos(\pi t / T_i))

    so every cycle starts again at its peak ``d^i v_0``. With the default ``peak_decay d = 1``
    this is torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0, T_mult, eta_min), and, for
    ``period_mult = 1``, optax's ``sgdr_schedule`` made of equal cosine pieces without warm-up.

    Args:
      init_value: ``v_0``, the value at each restart of the first cycle.
      first_period: ``T_0`` >= 1 steps.
      period_mult: ``m``, an int >= 1: each cycle is ``m`` times longer than the one before.
      min_value: ``v_min``, the value each cycle anneals towards.
      peak_decay: ``d`` in (0, 1]: the peak of cycle ``i`` is ``d^i v_0`` (the paper's optional
        decay of the maximum rate).

    Example:
      >>> import optix
      >>> sched = optix.schedules.sgdr(1.0, 10, period_mult=2)
      >>> [round(float(sched(s)), 3) for s in (0, 5, 10, 20, 30)]
      [1.0, 0.5, 1.0, 0.5, 1.0]

    Reference: Loshchilov & Hutter, `SGDR: stochastic gradient descent with warm restarts
    <https://arxiv.org/abs/1608.03983>`_,
    ICLR 2017.
    """
    check_value("init_value", init_value)
    period = length("first_period", first_period, minimum=1)
    mult = length("period_mult", period_mult, minimum=1)
    check_value("min_value", min_value)
    _validate.check_positive("peak_decay", peak_decay)
    if (_validate.concrete_float(peak_decay) or 0.0) > 1.0:
        raise ValueError(f"`peak_decay` must be in (0, 1]; got {peak_decay}")

    def start(cycle):
        """The step at which cycle ``cycle`` begins."""
        if mult == 1:
            return period * cycle
        return period * (mult**cycle - 1) / (mult - 1)

    def schedule(step):
        s = jnp.maximum(_float(step), 0)
        if mult == 1:
            cycle = jnp.floor(s / period)
        else:
            guess = jnp.floor(jnp.log(s / period * (mult - 1) + 1) / math.log(mult))
            # The logarithm can land one cycle off at a restart; settle it with exact starts.
            cycle = jnp.where(start(guess) > s, guess - 1, guess)
            cycle = jnp.where(start(cycle + 1) <= s, cycle + 1, cycle)
        span = period * _float(mult) ** cycle
        t = s - start(cycle)
        peak = _float(init_value) * _float(peak_decay) ** cycle
        return min_value + (peak - min_value) * 0.5 * (1 + jnp.cos(math.pi * t / span))

    return schedule


def cyclic(
    base_value: ArrayLike,
    max_value: ArrayLike,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: ArrayLike = 1.0,
) -> Schedule:
    r"""Cyclical learning rates: a triangle wave between ``base_value`` and an amplitude.

    A cycle goes up for ``step_size_up`` steps and down for ``step_size_down`` steps. With
    ``c`` the 1-based cycle number and ``x`` the position within it,

    .. math:: v(s) = v_{base} + (v_{max} - v_{base})\, h(x)\, f(c, s)

    where ``h`` is the triangle (0 at the ends of a cycle, 1 at its top) and ``f`` is 1
    (``"triangular"``), ``2^{-(c-1)}`` (``"triangular2"``: the amplitude halves every cycle) or
    ``gamma^s`` (``"exp_range"``). This is torch.optim.lr_scheduler.CyclicLR's learning rate
    (its momentum cycling is not part of a schedule).

    Args:
      base_value: the low end of the wave.
      max_value: the high end of the first cycle.
      step_size_up: steps going up (>= 1).
      step_size_down: steps going down (>= 1); default ``step_size_up``.
      mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
      gamma: the per-step amplitude decay of ``"exp_range"``, in (0, 1].

    Example:
      >>> import optix
      >>> sched = optix.schedules.cyclic(0.1, 1.0, 4, mode="triangular2")
      >>> [round(float(sched(s)), 3) for s in (0, 2, 4, 8, 12)]
      [0.1, 0.55, 1.0, 0.1, 0.55]

    Reference: Smith, `Cyclical learning rates for training neural networks
    <https://arxiv.org/abs/1506.01186>`_, WACV 2017.
    """
    check_value("base_value", base_value)
    check_value("max_value", max_value)
    _validate.check_int("step_size_up", step_size_up, minimum=1)
    if step_size_down is None:
        step_size_down = step_size_up
    _validate.check_int("step_size_down", step_size_down, minimum=1)
    _validate.check_choice("mode", mode, _CYCLIC_MODES)
    _validate.check_positive("gamma", gamma)
    if (_validate.concrete_float(gamma) or 0.0) > 1.0:
        raise ValueError(f"`gamma` must be in (0, 1]; got {gamma}")
    total = float(step_size_up + step_size_down)
    ratio = step_size_up / total

    def schedule(step):
        s = jnp.maximum(_float(step), 0)
        cycle = jnp.floor(1 + s / total)
        x = 1 + s / total - cycle
        height = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if mode == "triangular":
            factor = jnp.ones_like(s)
        elif mode == "triangular2":
            factor = 0.5 ** (cycle - 1)
        else:
            factor = _float(gamma) ** s
        return base_value + (_float(max_value) - base_value) * height * factor

    return schedule
