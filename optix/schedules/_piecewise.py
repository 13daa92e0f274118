"""Piecewise interpolation between scaled values, and optax's linear one-cycle policy built on it."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _validate
from optix._base import Schedule
from optix._hyperparams import hyperparam_dtype
from optix.schedules._cyclic import anneal_between
from optix.schedules._steps import as_float
from optix.schedules._steps import check_value
from optix.schedules._steps import elapsed
from optix.schedules._steps import length
from optix.schedules._steps import reached
from optix.schedules._steps import sorted_boundaries_and_scales

_INTERPOLATIONS = ("linear", "cosine")


def piecewise_interpolate(
    interpolate_type: str,
    init_value: ArrayLike,
    boundaries_and_scales: Mapping[int, ArrayLike] | None = None,
) -> Schedule:
    r"""Interpolate between accumulated values placed at step boundaries.

    With boundaries ``0 = b_0 \le b_1 < \dots < b_n`` and scales ``f_i``, the value at ``b_i`` is
    ``v_i = v_0 \prod_{j \le i} f_j``, and between two boundaries the value goes from one to the
    next by a line or a half cosine:

    .. math::
        v(s) = \begin{cases} v_i + (v_{i+1} - v_i)\, p & \text{linear} \\
        v_{i+1} + \tfrac12 (v_i - v_{i+1}) (1 + \cos \pi p) & \text{cosine} \end{cases}
        \quad p = \frac{s - b_i}{b_{i+1} - b_i}, \quad b_i \le s < b_{i+1}

    and ``v_n`` from ``b_n`` on. So the scales multiply together, as in :func:`piecewise_constant`;
    the schedule does not interpolate between the scales themselves. This is optax's
    ``piecewise_interpolate_schedule`` (same arguments, same order), except that a negative step
    reads ``init_value`` where optax gives 0. Boundaries may be any size.

    Args:
      interpolate_type: ``"linear"`` or ``"cosine"``.
      init_value: ``v_0``, finite and ``>= 0``.
      boundaries_and_scales: ``{b_i: f_i}``, int boundaries ``>= 0`` and scales ``>= 0``.

    Example:
      >>> import optix
      >>> sched = optix.schedules.piecewise_interpolate("linear", 1.0, {4: 0.5, 8: 0.5})
      >>> [float(sched(s)) for s in (0, 2, 4, 6, 8, 10)]
      [1.0, 0.75, 0.5, 0.375, 0.25, 0.25]
    """
    _validate.check_choice("interpolate_type", interpolate_type, _INTERPOLATIONS)
    check_value("init_value", init_value)
    items = sorted_boundaries_and_scales(boundaries_and_scales)
    bounds = [0, *(b for b, _ in items)]
    scales = [f for _, f in items]

    def schedule(step):
        s = jnp.asarray(step)
        values = [jnp.full(jnp.shape(s), init_value, hyperparam_dtype())]
        for f in scales:
            values.append(values[-1] * as_float(f))
        out = values[-1]
        # From the last segment back to the first, so that the earliest one not yet over wins.
        for i in reversed(range(len(scales))):
            size = float(max(bounds[i + 1] - bounds[i], 1))
            frac = jnp.minimum(elapsed(s, bounds[i]) / size, 1.0)
            piece = anneal_between(values[i], values[i + 1], frac, interpolate_type)
            out = jnp.where(reached(s, bounds[i + 1]), out, piece)
        return out

    return schedule


def linear_onecycle(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: ArrayLike = 0.3,
    pct_final: ArrayLike = 0.85,
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
) -> Schedule:
    r"""optax's linear one-cycle policy: up, back down, then a final decay, all by straight lines.

    With ``T = transition_steps``, ``b_1 = \lfloor \text{pct\_start}\, T \rfloor`` and
    ``b_2 = \lfloor \text{pct\_final}\, T \rfloor``, and ``v_0 = \text{peak} / \text{div\_factor}``:

    - from step 0 to ``b_1`` the value rises linearly from ``v_0`` to ``peak_value``;
    - from ``b_1`` to ``b_2`` it falls linearly back to ``v_0``;
    - from ``b_2`` to ``T`` it falls linearly to ``v_0 / final_div_factor``, and stays there.

    This is optax's ``linear_onecycle_schedule`` step for step (same arguments, same order): it
    is :func:`piecewise_interpolate` ``("linear", v_0, {b_1: div, b_2: 1/div, T: 1/final_div})``.
    :func:`one_cycle` is the other convention, torch's ``OneCycleLR``: two (or three) phases, the
    last of which goes straight from the peak to the final value.

    Args:
      transition_steps: ``T >= 1``, the length of the whole cycle (any size).
      peak_value: the largest value, reached at ``b_1``; finite and ``>= 0``.
      pct_start: fraction of ``T`` spent rising, ``>= 0``.
      pct_final: fraction of ``T`` at which the fall back to ``v_0`` ends; ``0 <= b_1 < b_2 < T``.
      div_factor: ``peak_value / v_0``, ``> 0``.
      final_div_factor: ``v_0`` divided by the final value, ``> 0``.

    Example:
      >>> import optix
      >>> sched = optix.schedules.linear_onecycle(100, 1.0, 0.25, 0.75, div_factor=10.0)
      >>> [round(float(sched(s)), 4) for s in (0, 25, 75, 100)]
      [0.1, 1.0, 0.1, 0.0]

    Reference: Smith & Topin, `Super-convergence: very fast training of neural networks using
    large learning rates <https://arxiv.org/abs/1708.07120>`_, 2019.
    """
    total = length("transition_steps", transition_steps, minimum=1)
    check_value("peak_value", peak_value)
    _validate.check_positive("div_factor", div_factor)
    _validate.check_positive("final_div_factor", final_div_factor)
    fractions = {}
    for name, pct in (("pct_start", pct_start), ("pct_final", pct_final)):
        x = _validate.concrete_float(pct)  # they place the boundaries: they must be concrete
        if x is None:
            raise TypeError(f"`{name}` must be a concrete number; got {pct!r}")
        _validate.check_nonnegative(name, x)
        fractions[name] = x
    up_end = int(fractions["pct_start"] * total)
    down_end = int(fractions["pct_final"] * total)
    if not up_end < down_end < transition_steps:
        raise ValueError(
            "`pct_start` and `pct_final` must place int(pct_start * transition_steps) < "
            "int(pct_final * transition_steps) < transition_steps, so that each phase has a step; "
            f"got {up_end}, {down_end} and {transition_steps} (pct_start={pct_start}, "
            f"pct_final={pct_final})"
        )
    return piecewise_interpolate(
        "linear",
        peak_value / div_factor,
        {up_end: div_factor, down_end: 1.0 / div_factor, transition_steps: 1.0 / final_div_factor},
    )
