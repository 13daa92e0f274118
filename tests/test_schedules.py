"""Every schedule in ``optix.schedules``: textbook math, optax, jit, argument checks, and use as a
learning rate.

Each case carries three things built independently of one another: the optix schedule, the optax
schedule with the same meaning, and the textbook definition written here as plain Python on
floats (``math``, float64). The schedules are evaluated over every step from 0 to well past the
end of the schedule, so 0, every boundary (and the steps either side of it) and the flat tail are
all covered, plus a few far-away steps.

Tolerances: optix computes in float32 (the hyperparameter dtype when x64 is off). Against the
float64 textbook the error is a few float32 ulps of the schedule's scale, so ``rtol=1e-6`` with
``atol=1e-6 * scale`` (for values that decay to 0, where ``1 + cos(pi * s / T)`` cancels). Against
optax, both in float32, the same ``rtol=1e-6``: both evaluate the same formula, reordered. A
schedule rounded to bfloat16 (8 significant bits, relative error up to 2e-3) or off by one step is
thousands of times further away than that. With x64 on, the schedules compute in float64 and must
match the textbook to ``rtol=1e-12``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix import schedules as S

RTOL = 1e-6  # float32 against float64 (textbook) or float32 (optax); see the module docstring
RTOL_X64 = 1e-12  # float64 against float64
# The schedules of optix/schedules/_cyclic.py and _decay.py, which
# tests/test_schedules_cyclic_decay.py covers (here, so that this file runs without torch).
CYCLIC_DECAY_NAMES = {
    "cyclic",
    "inverse_sqrt",
    "inverse_time_decay",
    "one_cycle",
    "sgdr",
    "step_decay",
    "warmup_stable_decay",
}

# ---------------------------------------------------------------------------------------------
# Textbook definitions: plain Python on floats, one step at a time.
# ---------------------------------------------------------------------------------------------

Ref = Callable[[int], float]


def ref_constant(v: float) -> Ref:
    return lambda s: v


def ref_linear(v0: float, v1: float, steps: int, begin: int = 0) -> Ref:
    """Straight line from ``(begin, v0)`` to ``(begin + steps, v1)``, flat outside it."""

    def f(s):
        if s <= begin:
            return v0
        if s >= begin + steps:
            return v1
        return v0 + (v1 - v0) * (s - begin) / steps

    return f


def ref_polynomial(v0: float, v1: float, power: float, steps: int, begin: int = 0) -> Ref:
    """``v1 + (v0 - v1) * (remaining fraction) ** power``."""

    def f(s):
        done = min(max(s - begin, 0), steps)
        remaining = (steps - done) / steps
        return v1 + (v0 - v1) * remaining**power

    return f


def ref_cosine(v0: float, steps: int, alpha: float = 0.0, power: float = 1.0) -> Ref:
    """``v0 * ((1 - a) * (0.5 * (1 + cos(pi * min(s, T) / T))) ** p + a)``."""

    def f(s):
        c = 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        return v0 * ((1 - alpha) * c**power + alpha)

    return f


def ref_warmup_cosine(
    v_init: float, peak: float, warmup: int, total: int, end: float = 0.0, power: float = 1.0
) -> Ref:
    """Linear ramp ``v_init -> peak`` over ``warmup`` steps, then a cosine from ``peak`` to
    ``end`` over the remaining ``total - warmup`` steps, then ``end``."""

    def f(s):
        if s < warmup:
            return v_init + (peak - v_init) * s / warmup
        t = min(s - warmup, total - warmup)
        c = 0.5 * (1 + math.cos(math.pi * t / (total - warmup)))
        return end + (peak - end) * c**power

    return f


def ref_exponential(
    v0: float,
    steps: int,
    rate: float,
    staircase: bool = False,
    begin: int = 0,
    end: float | None = None,
) -> Ref:
    """``v0 * rate ** ((s - begin) / steps)`` (exponent floored with ``staircase``), ``v0`` before
    ``begin``, and never past ``end`` in the direction of travel."""

    def f(s):
        if s <= begin:
            value = v0
        else:
            exponent = (s - begin) / steps
            if staircase:
                exponent = math.floor(exponent)
            try:
                value = v0 * rate**exponent
            except OverflowError:  # growth far past the cap: the cap below applies
                value = math.inf
        if end is not None:
            value = max(value, end) if rate < 1 else min(value, end)
        return value

    return f


def ref_piecewise(v0: float, scales: dict[int, float]) -> Ref:
    """``v0`` times every scale whose boundary the step has reached (optax's ``t >= b_i``)."""

    def f(s):
        value = v0
        for b, scale in scales.items():
            if s >= b:
                value *= scale
        return value

    return f


def ref_join(refs: list[Ref], boundaries: list[int]) -> Ref:
    """The piece whose interval holds ``s``, evaluated at the steps since that piece began."""

    def f(s):
        starts = [0, *boundaries]
        i = max(j for j, start in enumerate(starts) if s >= start)
        return refs[i](s - starts[i])

    return f


def ref_piecewise_interpolate(kind: str, v0: float, scales: dict[int, float]) -> Ref:
    """From ``v_i`` at ``b_i`` to ``v_{i+1} = v_i f_{i+1}`` at ``b_{i+1}`` by a line or a half
    cosine (``b_0 = 0``); the last value from the last boundary on."""
    bounds = [0, *sorted(scales)]
    values = [v0]
    for b in sorted(scales):
        values.append(values[-1] * scales[b])

    def f(s):
        if s >= bounds[-1]:
            return values[-1]
        i = max(j for j in range(len(bounds) - 1) if bounds[j] <= s < bounds[j + 1])
        p = (s - bounds[i]) / (bounds[i + 1] - bounds[i])
        a, b = values[i], values[i + 1]
        if kind == "linear":
            return a + (b - a) * p
        return b + (a - b) / 2 * (1 + math.cos(math.pi * p))

    return f


def ref_linear_onecycle(
    total: int, peak: float, pct_start: float, pct_final: float, div: float, final_div: float
) -> Ref:
    """Three straight lines: ``peak / div`` up to ``peak`` by ``int(pct_start T)``, back down to
    ``peak / div`` by ``int(pct_final T)``, then down to ``peak / div / final_div`` by ``T``."""
    low = peak / div
    corners = [
        (0, low),
        (int(pct_start * total), peak),
        (int(pct_final * total), low),
        (total, low / final_div),
    ]

    def f(s):
        for (b0, v0), (b1, v1) in zip(corners[:-1], corners[1:], strict=True):
            if s < b1:
                return v0 + (v1 - v0) * (s - b0) / (b1 - b0)
        return corners[-1][1]

    return f


# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], optix.Schedule]  # built inside each test (its dtype follows x64)
    make_optax: Callable[[], optax.Schedule]
    ref: Ref
    end: int  # the step after which the schedule is flat (or its last interesting step)

    def steps(self) -> list[int]:
        dense = range(0, self.end + 12)
        far = (2 * self.end + 3, 10 * self.end + 7, 100_000)
        return [*dense, *far]


PIECEWISE = {10: 0.1, 25: 0.5, 26: 3.0}

CASES = [
    Case(
        "constant",
        lambda: S.constant(0.3),
        lambda: optax.constant_schedule(0.3),
        ref_constant(0.3),
        5,
    ),
    Case(
        "linear_up",
        lambda: S.linear(0.1, 1.3, 20),
        lambda: optax.linear_schedule(0.1, 1.3, 20),
        ref_linear(0.1, 1.3, 20),
        20,
    ),
    Case(
        "linear_down_begin",
        lambda: S.linear(1.0, 0.05, 13, transition_begin=6),
        lambda: optax.linear_schedule(1.0, 0.05, 13, transition_begin=6),
        ref_linear(1.0, 0.05, 13, begin=6),
        19,
    ),
    Case(
        "polynomial_p2",
        lambda: S.polynomial(1.0, 0.01, 2.0, 30),
        lambda: optax.polynomial_schedule(1.0, 0.01, 2.0, 30),
        ref_polynomial(1.0, 0.01, 2.0, 30),
        30,
    ),
    Case(
        "polynomial_sqrt_begin",
        lambda: S.polynomial(0.5, 0.0, 0.5, 15, transition_begin=7),
        lambda: optax.polynomial_schedule(0.5, 0.0, 0.5, 15, transition_begin=7),
        ref_polynomial(0.5, 0.0, 0.5, 15, begin=7),
        22,
    ),
    Case(
        "polynomial_cubic_up",
        lambda: S.polynomial(0.0, 2.0, 3, 11),
        lambda: optax.polynomial_schedule(0.0, 2.0, 3, 11),
        ref_polynomial(0.0, 2.0, 3, 11),
        11,
    ),
    Case(
        "cosine",
        lambda: S.cosine_decay(0.1, 50),
        lambda: optax.cosine_decay_schedule(0.1, 50),
        ref_cosine(0.1, 50),
        50,
    ),
    Case(
        "cosine_alpha_exponent",
        lambda: S.cosine_decay(2.0, 40, alpha=0.1, exponent=2.0),
        lambda: optax.cosine_decay_schedule(2.0, 40, alpha=0.1, exponent=2.0),
        ref_cosine(2.0, 40, alpha=0.1, power=2.0),
        40,
    ),
    Case(
        "cosine_sqrt",
        lambda: S.cosine_decay(0.7, 17, alpha=0.02, exponent=0.5),
        lambda: optax.cosine_decay_schedule(0.7, 17, alpha=0.02, exponent=0.5),
        ref_cosine(0.7, 17, alpha=0.02, power=0.5),
        17,
    ),
    Case(
        "warmup_cosine",
        lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 60),
        lambda: optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 60),
        ref_warmup_cosine(0.0, 1.0, 10, 60),
        60,
    ),
    Case(
        "warmup_cosine_end_exponent",
        lambda: S.warmup_cosine_decay(0.1, 0.5, 5, 45, end_value=0.01, exponent=1.5),
        lambda: optax.warmup_cosine_decay_schedule(0.1, 0.5, 5, 45, end_value=0.01, exponent=1.5),
        ref_warmup_cosine(0.1, 0.5, 5, 45, end=0.01, power=1.5),
        45,
    ),
    Case(
        "warmup_cosine_no_warmup",
        lambda: S.warmup_cosine_decay(0.0, 0.3, 0, 25, end_value=0.03),
        lambda: optax.warmup_cosine_decay_schedule(0.0, 0.3, 0, 25, end_value=0.03),
        ref_warmup_cosine(0.0, 0.3, 0, 25, end=0.03),
        25,
    ),
    Case(
        "exponential",
        lambda: S.exponential_decay(1.0, 10, 0.5),
        lambda: optax.exponential_decay(1.0, 10, 0.5),
        ref_exponential(1.0, 10, 0.5),
        60,
    ),
    Case(
        "exponential_staircase",
        lambda: S.exponential_decay(0.8, 7, 0.3, staircase=True),
        lambda: optax.exponential_decay(0.8, 7, 0.3, staircase=True),
        ref_exponential(0.8, 7, 0.3, staircase=True),
        36,
    ),
    Case(
        "exponential_begin_end",
        lambda: S.exponential_decay(1.0, 5, 0.5, transition_begin=8, end_value=0.1),
        lambda: optax.exponential_decay(1.0, 5, 0.5, transition_begin=8, end_value=0.1),
        ref_exponential(1.0, 5, 0.5, begin=8, end=0.1),
        30,
    ),
    Case(
        "exponential_staircase_begin_end",
        lambda: S.exponential_decay(3.0, 4, 0.7, True, transition_begin=3, end_value=0.9),
        lambda: optax.exponential_decay(3.0, 4, 0.7, 3, True, 0.9),
        ref_exponential(3.0, 4, 0.7, staircase=True, begin=3, end=0.9),
        25,
    ),
    Case(
        "exponential_growth_capped",
        lambda: S.exponential_decay(0.01, 6, 1.5, end_value=0.05),
        lambda: optax.exponential_decay(0.01, 6, 1.5, end_value=0.05),
        ref_exponential(0.01, 6, 1.5, end=0.05),
        30,
    ),
    Case(
        "piecewise",
        lambda: S.piecewise_constant(1.0, PIECEWISE),
        lambda: optax.piecewise_constant_schedule(1.0, PIECEWISE),
        ref_piecewise(1.0, PIECEWISE),
        26,
    ),
    Case(
        "piecewise_unsorted_with_zero",
        lambda: S.piecewise_constant(0.2, {30: 0.0, 4: 2.5}),
        lambda: optax.piecewise_constant_schedule(0.2, {30: 0.0, 4: 2.5}),
        ref_piecewise(0.2, {4: 2.5, 30: 0.0}),
        30,
    ),
    Case(
        "piecewise_no_boundaries",
        lambda: S.piecewise_constant(0.4),
        lambda: optax.piecewise_constant_schedule(0.4),
        ref_piecewise(0.4, {}),
        3,
    ),
    Case(
        "join_three",
        lambda: S.join(
            [S.linear(0.0, 1.0, 10), S.cosine_decay(1.0, 20, alpha=0.1), S.constant(0.05)],
            [10, 30],
        ),
        lambda: optax.join_schedules(
            [
                optax.linear_schedule(0.0, 1.0, 10),
                optax.cosine_decay_schedule(1.0, 20, alpha=0.1),
                optax.constant_schedule(0.05),
            ],
            [10, 30],
        ),
        ref_join(
            [ref_linear(0.0, 1.0, 10), ref_cosine(1.0, 20, 0.1), ref_constant(0.05)], [10, 30]
        ),
        30,
    ),
    Case(
        "join_restarts",
        lambda: S.join([S.exponential_decay(1.0, 4, 0.5)] * 3, [12, 20]),
        lambda: optax.join_schedules([optax.exponential_decay(1.0, 4, 0.5)] * 3, [12, 20]),
        ref_join([ref_exponential(1.0, 4, 0.5)] * 3, [12, 20]),
        30,
    ),
    Case(
        "join_single",
        lambda: S.join([S.linear(0.2, 0.6, 8)], []),
        lambda: optax.join_schedules([optax.linear_schedule(0.2, 0.6, 8)], []),
        ref_linear(0.2, 0.6, 8),
        8,
    ),
]

CASES += [
    Case(
        "piecewise_interpolate_linear",
        lambda: S.piecewise_interpolate("linear", 1.0, PIECEWISE),
        lambda: optax.piecewise_interpolate_schedule("linear", 1.0, PIECEWISE),
        ref_piecewise_interpolate("linear", 1.0, PIECEWISE),
        26,
    ),
    Case(
        "piecewise_interpolate_cosine_zero_boundary",
        lambda: S.piecewise_interpolate("cosine", 0.5, {30: 0.0, 0: 2.0, 12: 0.3}),
        lambda: optax.piecewise_interpolate_schedule("cosine", 0.5, {30: 0.0, 0: 2.0, 12: 0.3}),
        ref_piecewise_interpolate("cosine", 1.0, {12: 0.3, 30: 0.0}),  # 0.5 * 2.0 from step 0
        30,
    ),
    Case(
        "piecewise_interpolate_no_boundaries",
        lambda: S.piecewise_interpolate("cosine", 0.4),
        lambda: optax.piecewise_interpolate_schedule("cosine", 0.4),
        ref_constant(0.4),
        3,
    ),
    Case(
        "linear_onecycle_defaults",
        lambda: S.linear_onecycle(100, 1.0),
        lambda: optax.linear_onecycle_schedule(100, 1.0),
        ref_linear_onecycle(100, 1.0, 0.3, 0.85, 25.0, 1e4),
        100,
    ),
    Case(
        "linear_onecycle_all_arguments",
        lambda: S.linear_onecycle(37, 2.0, 0.2, 0.6, 10.0, 100.0),
        lambda: optax.linear_onecycle_schedule(37, 2.0, 0.2, 0.6, 10.0, 100.0),
        ref_linear_onecycle(37, 2.0, 0.2, 0.6, 10.0, 100.0),
        37,
    ),
    Case(
        "warmup_constant",
        lambda: S.warmup_constant(0.1, 0.9, 15),
        lambda: optax.warmup_constant_schedule(0.1, 0.9, 15),
        ref_linear(0.1, 0.9, 15),
        15,
    ),
    Case(
        "warmup_exponential_decay",
        lambda: S.warmup_exponential_decay(0.0, 1.0, 10, 5, 0.5),
        lambda: optax.warmup_exponential_decay_schedule(0.0, 1.0, 10, 5, 0.5),
        ref_join([ref_linear(0.0, 1.0, 10), ref_exponential(1.0, 5, 0.5)], [10]),
        50,
    ),
    Case(
        "warmup_exponential_decay_all_arguments",
        lambda: S.warmup_exponential_decay(0.1, 1.0, 7, 4, 0.7, 3, True, 0.2),
        lambda: optax.warmup_exponential_decay_schedule(0.1, 1.0, 7, 4, 0.7, 3, True, 0.2),
        ref_join(
            [ref_linear(0.1, 1.0, 7), ref_exponential(1.0, 4, 0.7, True, begin=3, end=0.2)], [7]
        ),
        40,
    ),
    Case(
        "warmup_exponential_decay_growth_no_warmup",
        lambda: S.warmup_exponential_decay(0.0, 0.01, 0, 6, 1.5, end_value=0.05),
        lambda: optax.warmup_exponential_decay_schedule(0.0, 0.01, 0, 6, 1.5, end_value=0.05),
        ref_exponential(0.01, 6, 1.5, end=0.05),
        30,
    ),
]
CASE_IDS = [c.id for c in CASES]


def _expected(case: Case, steps: list[int]) -> np.ndarray:
    return np.array([case.ref(s) for s in steps], np.float64)


def _on_steps(sched, steps: list[int], dtype=jnp.int32) -> np.ndarray:
    """The schedule on a vector of steps, compiled once (op-by-op dispatch is slow on CPU).

    A schedule with nothing that depends on the step (no boundaries) may return a scalar; it is
    broadcast to the steps.
    """
    out = jax.jit(sched)(jnp.asarray(steps, dtype))
    return np.broadcast_to(np.asarray(out, np.float64), (len(steps),))


def _assert_close(actual, expected, rtol: float) -> None:
    actual = np.asarray(actual, np.float64)
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# The optix schedule each case exercises, by the longest prefix of its id found here.
PREFIX_TO_SCHEDULE = {
    "constant": "constant",
    "linear": "linear",
    "linear_onecycle": "linear_onecycle",
    "polynomial": "polynomial",
    "cosine": "cosine_decay",
    "warmup_cosine": "warmup_cosine_decay",
    "warmup_constant": "warmup_constant",
    "warmup_exponential_decay": "warmup_exponential_decay",
    "exponential": "exponential_decay",
    "piecewise": "piecewise_constant",
    "piecewise_interpolate": "piecewise_interpolate",
    "join": "join",
}


def schedule_of(case_id: str) -> str:
    return PREFIX_TO_SCHEDULE[
        max((p for p in PREFIX_TO_SCHEDULE if case_id.startswith(p)), key=len)
    ]


def test_every_schedule_has_cases():
    covered = {schedule_of(c.id) for c in CASES}
    assert covered | CYCLIC_DECAY_NAMES == set(
        S.__all__
    )  # the rest: tests/test_schedules_cyclic_decay.py


# ---------------------------------------------------------------------------------------------
# Values: textbook (under jit, step traced), optax, float64.
# ---------------------------------------------------------------------------------------------


def jit_step_by_step(sched: Callable, steps: list[int]) -> np.ndarray:
    """``sched`` at each of ``steps`` under ``jax.jit`` with the step a traced int32 scalar,
    checked to be traced once (the step is not static) and to give float32 scalars."""
    traces = []

    def traced(step):
        traces.append(step)
        return sched(step)

    jitted = jax.jit(traced)
    out = [jitted(jnp.int32(s)) for s in steps]
    assert len(traces) == 1 and isinstance(traces[0], jax.core.Tracer)  # traced once, not static
    assert all(o.dtype == jnp.float32 and o.shape == () for o in out)
    return np.array([float(o) for o in out])


def _bf16(x: float) -> float:
    return float(np.asarray(x, jnp.bfloat16).astype(np.float64))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_textbook_under_jit(case):
    """Step by step under ``jax.jit`` with the step a traced int32: float32, the textbook value."""
    sched = case.make()
    steps = case.steps()
    out = jit_step_by_step(sched, steps)
    expected = _expected(case, steps)
    _assert_close(out, expected, RTOL)
    # The sweep has values that bfloat16 cannot hold (off by > 100 * RTOL once rounded), so the
    # comparison above would catch a schedule that went through bfloat16.
    nonzero = [e for e in expected if e != 0.0]
    assert max(abs(_bf16(e) - e) / abs(e) for e in nonzero) > 100 * RTOL
    # Called eagerly with a plain Python int, it gives the same value.
    i = len(steps) // 2
    assert float(sched(steps[i])) == pytest.approx(float(out[i]), rel=RTOL, abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_optax(case):
    steps = case.steps()
    ours = _on_steps(case.make(), steps)
    # optax's schedules are not written for strict promotion; they get JAX's default. Some
    # (piecewise_interpolate_schedule) take only a scalar step: vmap them.
    with jax.numpy_dtype_promotion("standard"):
        theirs = _on_steps(jax.vmap(case.make_optax()), steps)
    # Under jit optax's polynomial_schedule with a fractional power is NaN from the end of the
    # transition on (see test_jit_exact_at_transition_points); compare where optax is a number.
    finite = np.isfinite(theirs)
    assert finite.sum() >= 0.5 * len(steps)
    _assert_close(ours[finite], theirs[finite], RTOL)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float64_with_x64(case, x64):
    steps = case.steps()
    out = jax.jit(case.make())(jnp.asarray(steps, jnp.int64))
    assert out.dtype == jnp.float64
    _assert_close(np.broadcast_to(out, (len(steps),)), _expected(case, steps), RTOL_X64)


def test_piecewise_constant_boundary_step_matches_optax_and_join():
    """At a boundary step ``b`` itself the scale applies: optax documents (``t >= b_i``) and
    computes it so, and ``optix.schedules.join`` switches pieces at ``s >= b`` too.
    """
    scales = {10: 0.1, 20: 0.5}
    steps = [9, 10, 11, 19, 20, 21]
    ours = _on_steps(S.piecewise_constant(1.0, scales), steps)
    joined = _on_steps(
        S.join([S.constant(1.0), S.constant(0.1), S.constant(0.05)], [10, 20]), steps
    )
    with jax.numpy_dtype_promotion("standard"):
        theirs = _on_steps(optax.piecewise_constant_schedule(1.0, scales), steps)
    _assert_close(theirs, [1.0, 0.1, 0.1, 0.1, 0.05, 0.05], RTOL)
    _assert_close(joined, theirs, RTOL)
    _assert_close(ours, theirs, RTOL)


# Transition lengths whose float32 reciprocal is not exact; 41, 47 and 55 are among those for which
# XLA's ``s / T -> s * (1 / T)`` lands just below an integer at a multiple of T (on CPU).
EXACT_T = (1, 2, 3, 5, 7, 10, 15, 41, 47, 55, 100, 999)


def test_jit_exact_at_transition_points():
    """Under jit, where the textbook value is exact, so is the schedule's.

    - polynomial / linear: from ``begin + T`` on the value is ``end_value`` itself (the remaining
      fraction is exactly 0): never NaN (a fractional power of a negative number), never stuck
      above it (``sqrt`` of a tiny positive fraction is 1e-4), and never past it (a learning rate
      decayed "to 0" must not turn negative and step uphill);
    - staircase exponential decay: at step ``k * T`` the value is ``rate ** k``, not one step late.
    """
    failures = []
    for T in EXACT_T:
        sqrt_poly = S.polynomial(1.0, 0.0, 0.5, T)
        lin = S.linear(0.3, 0.0, T, transition_begin=2)
        square_poly = S.polynomial(0.5, 0.25, 2, T)
        stair = S.exponential_decay(1.0, T, 0.5, staircase=True)

        @jax.jit
        def values(step, sqrt_poly=sqrt_poly, lin=lin, square_poly=square_poly, stair=stair):
            return sqrt_poly(step), lin(step + 2), square_poly(step), stair(step)

        ends = jnp.asarray([T, T + 1, 3 * T + 4], jnp.int32)
        got = [np.asarray(v) for v in values(ends)]
        for what, value, want in (
            ("polynomial(1.0, 0.0, power=0.5)", got[0], 0.0),
            ("linear(0.3, 0.0)", got[1], 0.0),
            ("polynomial(0.5, 0.25, power=2)", got[2], 0.25),
        ):
            if not np.all(value == np.float32(want)):
                failures.append(f"T={T}: {what} at steps {ends.tolist()} is {value}, not {want}")
        multiples = jnp.asarray([k * T for k in range(1, 9)], jnp.int32)
        stair_values = np.asarray(values(multiples)[3])
        want = 0.5 ** np.arange(1, 9, dtype=np.float32)
        if not np.array_equal(stair_values, want):
            k = int(np.argmax(stair_values != want)) + 1
            failures.append(
                f"T={T}: staircase exponential_decay(1.0, T, 0.5) at step {k}*T is "
                f"{stair_values[k - 1]}, not {want[k - 1]}"
            )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.uint8, jnp.int16, jnp.uint32, jnp.int32])
def test_any_int_step_dtype_gives_float32(dtype):
    case = next(c for c in CASES if c.id == "join_three")
    steps = list(range(0, 45))
    out = jax.jit(case.make())(jnp.asarray(steps, dtype))
    assert out.dtype == jnp.float32
    _assert_close(out, _expected(case, steps), RTOL)


def test_vmap_over_steps():
    case = next(c for c in CASES if c.id == "warmup_cosine_end_exponent")
    steps = case.steps()
    out = jax.jit(jax.vmap(case.make()))(jnp.asarray(steps, jnp.int32))
    _assert_close(out, _expected(case, steps), RTOL)


# ---------------------------------------------------------------------------------------------
# Lengths and boundaries of any size, steps up to the int32 limit.
# ---------------------------------------------------------------------------------------------

INT32_MAX = 2**31 - 1
BIG = 10**10  # a length far beyond the int32 range
NEAR = INT32_MAX - 1000  # a boundary just below the int32 limit
# Steps a run can reach with the int32 count, with both sides of 10^9, 2 * 10^9 and NEAR.
HUGE_STEPS = (0, 1, 2, 999, 10**6, 10**9 - 1, 10**9, 10**9 + 1, 2 * 10**9 - 1, 2 * 10**9)
HUGE_STEPS += (NEAR - 1, NEAR, NEAR + 1, NEAR + 250, INT32_MAX - 1, INT32_MAX)


@dataclass(frozen=True)
class HugeCase:
    id: str
    make: Callable[[], optix.Schedule]
    make_optax: Callable[[], optax.Schedule] | None  # None where optax has no such schedule
    ref: Ref


HUGE = [
    HugeCase(
        "constant", lambda: S.constant(0.3), lambda: optax.constant_schedule(0.3), ref_constant(0.3)
    ),
    HugeCase(
        "linear",
        lambda: S.linear(1.0, 0.1, BIG),
        lambda: optax.linear_schedule(1.0, 0.1, BIG),
        ref_linear(1.0, 0.1, BIG),
    ),
    HugeCase(
        "linear_begins_beyond_int32",
        lambda: S.linear(1.0, 0.1, 5, transition_begin=BIG),
        lambda: optax.linear_schedule(1.0, 0.1, 5, transition_begin=BIG),
        ref_linear(1.0, 0.1, 5, begin=BIG),
    ),
    HugeCase(
        "linear_near_the_limit",
        lambda: S.linear(1.0, 0.0, 500, transition_begin=NEAR),
        lambda: optax.linear_schedule(1.0, 0.0, 500, transition_begin=NEAR),
        ref_linear(1.0, 0.0, 500, begin=NEAR),
    ),
    HugeCase(
        "polynomial",
        lambda: S.polynomial(2.0, 0.0, 0.5, 3 * 10**9),
        lambda: optax.polynomial_schedule(2.0, 0.0, 0.5, 3 * 10**9),
        ref_polynomial(2.0, 0.0, 0.5, 3 * 10**9),
    ),
    HugeCase(
        "cosine",
        lambda: S.cosine_decay(1000.0, BIG, alpha=0.1),
        lambda: optax.cosine_decay_schedule(1000.0, BIG, alpha=0.1),
        ref_cosine(1000.0, BIG, alpha=0.1),
    ),
    HugeCase(
        "warmup_cosine",
        lambda: S.warmup_cosine_decay(0.0, 1.0, 10**9, BIG, end_value=0.1),
        lambda: optax.warmup_cosine_decay_schedule(0.0, 1.0, 10**9, BIG, end_value=0.1),
        ref_warmup_cosine(0.0, 1.0, 10**9, BIG, end=0.1),
    ),
    HugeCase(
        "exponential",
        lambda: S.exponential_decay(1.0, BIG, 0.5),
        lambda: optax.exponential_decay(1.0, BIG, 0.5),
        ref_exponential(1.0, BIG, 0.5),
    ),
    HugeCase(
        "exponential_staircase",
        lambda: S.exponential_decay(1.0, 10**9, 0.5, staircase=True),
        lambda: optax.exponential_decay(1.0, 10**9, 0.5, staircase=True),
        ref_exponential(1.0, 10**9, 0.5, staircase=True),
    ),
    HugeCase(
        "exponential_staircase_near_the_limit",
        lambda: S.exponential_decay(1.0, 100, 0.5, True, transition_begin=NEAR, end_value=0.01),
        lambda: optax.exponential_decay(1.0, 100, 0.5, NEAR, True, 0.01),
        ref_exponential(1.0, 100, 0.5, staircase=True, begin=NEAR, end=0.01),
    ),
    HugeCase(
        "piecewise",
        lambda: S.piecewise_constant(1.0, {10**9: 0.5, NEAR: 0.1, INT32_MAX: 2.0, BIG: 0.0}),
        lambda: optax.piecewise_constant_schedule(
            1.0, {10**9: 0.5, NEAR: 0.1, INT32_MAX: 2.0, BIG: 0.0}
        ),
        ref_piecewise(1.0, {10**9: 0.5, NEAR: 0.1, INT32_MAX: 2.0, BIG: 0.0}),
    ),
    HugeCase(
        "join",
        lambda: S.join(
            [S.linear(0.0, 1.0, 10**9), S.cosine_decay(1.0, BIG), S.constant(0.5)], [10**9, BIG]
        ),
        lambda: optax.join_schedules(
            [
                optax.linear_schedule(0.0, 1.0, 10**9),
                optax.cosine_decay_schedule(1.0, BIG),
                optax.constant_schedule(0.5),
            ],
            [10**9, BIG],
        ),
        ref_join(
            [ref_linear(0.0, 1.0, 10**9), ref_cosine(1.0, BIG), ref_constant(0.5)], [10**9, BIG]
        ),
    ),
    HugeCase(
        "join_near_the_limit",
        lambda: S.join([S.constant(1.0), S.linear(1.0, 0.0, 500)], [NEAR]),
        lambda: optax.join_schedules(
            [optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, 500)], [NEAR]
        ),
        ref_join([ref_constant(1.0), ref_linear(1.0, 0.0, 500)], [NEAR]),
    ),
    HugeCase(
        "piecewise_interpolate",
        lambda: S.piecewise_interpolate("cosine", 1.0, {10**9: 0.5, NEAR: 0.1, BIG: 0.1}),
        lambda: optax.piecewise_interpolate_schedule(
            "cosine", 1.0, {10**9: 0.5, NEAR: 0.1, BIG: 0.1}
        ),
        ref_piecewise_interpolate("cosine", 1.0, {10**9: 0.5, NEAR: 0.1, BIG: 0.1}),
    ),
    HugeCase(
        "linear_onecycle",
        lambda: S.linear_onecycle(3 * 10**9, 1.0, 0.2, 0.5),
        lambda: optax.linear_onecycle_schedule(3 * 10**9, 1.0, 0.2, 0.5),
        ref_linear_onecycle(3 * 10**9, 1.0, 0.2, 0.5, 25.0, 1e4),
    ),
    HugeCase(
        "warmup_constant",
        lambda: S.warmup_constant(0.0, 1.0, 3 * 10**9),
        lambda: optax.warmup_constant_schedule(0.0, 1.0, 3 * 10**9),
        ref_linear(0.0, 1.0, 3 * 10**9),
    ),
    HugeCase(
        "warmup_exponential_decay",
        lambda: S.warmup_exponential_decay(0.0, 1.0, 10**9, BIG, 0.5),
        lambda: optax.warmup_exponential_decay_schedule(0.0, 1.0, 10**9, BIG, 0.5),
        ref_join([ref_linear(0.0, 1.0, 10**9), ref_exponential(1.0, BIG, 0.5)], [10**9]),
    ),
]


def test_every_schedule_has_a_huge_case():
    covered = {schedule_of(c.id) for c in HUGE}
    assert covered | CYCLIC_DECAY_NAMES == set(
        S.__all__
    )  # the rest: tests/test_schedules_cyclic_decay.py


def optax_in_float64(make_optax: Callable, steps) -> np.ndarray:
    """optax's schedule, built and evaluated with x64 on (int64 steps, float64 values): optax's
    own values for lengths and boundaries that do not fit in int32."""
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        sched = jax.jit(make_optax())
        return np.array([float(sched(jnp.int64(s))) for s in steps])


@pytest.mark.parametrize("case", HUGE, ids=[c.id for c in HUGE])
def test_huge_lengths_match_optax_and_textbook_under_jit(case):
    """Lengths and boundaries beyond 2^31 work (they overflowed int32 before), under jit with the
    int32 count, at every step it can reach: up to 2^31 - 1, where nothing wraps. Boundaries near
    the limit switch at the exact step (offsets are taken in integers)."""
    steps = list(HUGE_STEPS)
    ours = jit_step_by_step(case.make(), steps)
    expected = np.array([case.ref(s) for s in steps])
    _assert_close(ours, expected, RTOL)
    if case.make_optax is not None:
        _assert_close(ours, optax_in_float64(case.make_optax, steps), RTOL)


def test_unsigned_steps_past_the_int32_limit_do_not_wrap():
    """A uint32 step beyond 2^31 is not read as a negative int32 (the staircase used to cast)."""
    steps = [10**9 - 1, 10**9, 3 * 10**9 - 1, 3 * 10**9, 4 * 10**9]
    stair = _on_steps(S.exponential_decay(1.0, 10**9, 0.5, staircase=True), steps, jnp.uint32)
    _assert_close(stair, [1.0, 0.5, 0.25, 0.125, 0.0625], RTOL)
    piecewise = _on_steps(S.piecewise_constant(1.0, {3 * 10**9: 0.1}), steps, jnp.uint32)
    _assert_close(piecewise, [1.0, 1.0, 1.0, 0.1, 0.1], RTOL)
    joined = S.join([S.constant(1.0), S.linear(1.0, 0.0, 10**9)], [3 * 10**9])
    _assert_close(_on_steps(joined, steps, jnp.uint32), [1.0, 1.0, 1.0, 1.0, 0.0], RTOL)


def test_learning_rate_schedule_at_the_int32_limit():
    """The optimizer's int32 count reaches 2^31 - 1 and stays there: the schedule is read at the
    last steps, with lengths beyond int32, and never at a wrapped (negative) step."""
    sched = S.cosine_decay(1.0, BIG)
    tx = optix.scale_lr(sched)
    state = tx.init({"w": jnp.zeros(2)})
    state = state._replace(hyperparams=state.hyperparams._replace(count=jnp.int32(INT32_MAX - 1)))
    update = jax.jit(tx.update)
    for want_step in (INT32_MAX - 1, INT32_MAX, INT32_MAX):
        updates, state = update({"w": jnp.ones(2)}, state)
        want = ref_cosine(1.0, BIG)(want_step)
        np.testing.assert_allclose(np.asarray(updates["w"]), -want, rtol=RTOL)
        assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(want, RTOL)
    assert int(state.hyperparams.count) == INT32_MAX


# ---------------------------------------------------------------------------------------------
# Bad arguments: ValueError/TypeError naming the argument.
# ---------------------------------------------------------------------------------------------

BAD = [
    ("constant_nan", lambda: S.constant(float("nan")), ValueError, "value"),
    ("linear_zero_steps", lambda: S.linear(1.0, 0.0, 0), ValueError, "transition_steps"),
    ("linear_float_steps", lambda: S.linear(1.0, 0.0, 10.0), TypeError, "transition_steps"),
    ("linear_negative_begin", lambda: S.linear(1.0, 0.0, 10, -1), ValueError, "transition_begin"),
    ("polynomial_zero_steps", lambda: S.polynomial(1.0, 0.0, 2, 0), ValueError, "transition_steps"),
    (
        "polynomial_negative_steps",
        lambda: S.polynomial(1.0, 0.0, 2, -5),
        ValueError,
        "transition_steps",
    ),
    (
        "polynomial_bool_steps",
        lambda: S.polynomial(1.0, 0.0, 2, True),
        TypeError,
        "transition_steps",
    ),
    (
        "polynomial_nan_init",
        lambda: S.polynomial(float("nan"), 0.0, 2, 5),
        ValueError,
        "init_value",
    ),
    ("polynomial_inf_end", lambda: S.polynomial(1.0, float("inf"), 2, 5), ValueError, "end_value"),
    ("polynomial_inf_power", lambda: S.polynomial(1.0, 0.0, float("inf"), 5), ValueError, "power"),
    ("cosine_zero_steps", lambda: S.cosine_decay(1.0, 0), ValueError, "decay_steps"),
    ("cosine_negative_steps", lambda: S.cosine_decay(1.0, -1), ValueError, "decay_steps"),
    ("cosine_float_steps", lambda: S.cosine_decay(1.0, 10.5), TypeError, "decay_steps"),
    ("cosine_zero_exponent", lambda: S.cosine_decay(1.0, 10, exponent=0.0), ValueError, "exponent"),
    ("cosine_nan_alpha", lambda: S.cosine_decay(1.0, 10, alpha=float("nan")), ValueError, "alpha"),
    ("cosine_inf_init", lambda: S.cosine_decay(float("inf"), 10), ValueError, "init_value"),
    ("warmup_equal", lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 10), ValueError, "warmup_steps"),
    ("warmup_longer", lambda: S.warmup_cosine_decay(0.0, 1.0, 20, 10), ValueError, "decay_steps"),
    (
        "warmup_negative",
        lambda: S.warmup_cosine_decay(0.0, 1.0, -1, 10),
        ValueError,
        "warmup_steps",
    ),
    (
        "warmup_decay_negative",
        lambda: S.warmup_cosine_decay(0.0, 1.0, 0, -1),
        ValueError,
        "decay_steps",
    ),
    ("warmup_zero_peak", lambda: S.warmup_cosine_decay(0.0, 0.0, 5, 10), ValueError, "peak_value"),
    (
        "warmup_nan_end",
        lambda: S.warmup_cosine_decay(0.0, 1.0, 5, 10, float("nan")),
        ValueError,
        "end_value",
    ),
    ("exp_zero_steps", lambda: S.exponential_decay(1.0, 0, 0.5), ValueError, "transition_steps"),
    ("exp_float_steps", lambda: S.exponential_decay(1.0, 1.0, 0.5), TypeError, "transition_steps"),
    ("exp_zero_rate", lambda: S.exponential_decay(1.0, 10, 0.0), ValueError, "decay_rate"),
    ("exp_negative_rate", lambda: S.exponential_decay(1.0, 10, -0.5), ValueError, "decay_rate"),
    (
        "exp_negative_begin",
        lambda: S.exponential_decay(1.0, 10, 0.5, transition_begin=-3),
        ValueError,
        "transition_begin",
    ),
    ("exp_nan_init", lambda: S.exponential_decay(float("nan"), 10, 0.5), ValueError, "init_value"),
    (
        "piecewise_negative_scale",
        lambda: S.piecewise_constant(1.0, {5: -0.1}),
        ValueError,
        "boundaries_and_scales",
    ),
    (
        "piecewise_negative_boundary",
        lambda: S.piecewise_constant(1.0, {-5: 0.1}),
        ValueError,
        "boundaries_and_scales",
    ),
    (
        "piecewise_float_boundary",
        lambda: S.piecewise_constant(1.0, {5.5: 0.1}),
        TypeError,
        "boundaries_and_scales",
    ),
    (
        "piecewise_nan_init",
        lambda: S.piecewise_constant(float("nan"), {5: 0.1}),
        ValueError,
        "init_value",
    ),
    (
        "join_too_many_boundaries",
        lambda: S.join([S.constant(1.0)] * 2, [5, 10]),
        ValueError,
        "boundaries",
    ),
    (
        "join_too_few_boundaries",
        lambda: S.join([S.constant(1.0)] * 3, [5]),
        ValueError,
        "boundaries",
    ),
    (
        "join_negative_boundary",
        lambda: S.join([S.constant(1.0)] * 2, [-1]),
        ValueError,
        "boundaries",
    ),
    ("join_decreasing", lambda: S.join([S.constant(1.0)] * 3, [20, 10]), ValueError, "boundaries"),
    ("join_float_boundary", lambda: S.join([S.constant(1.0)] * 2, [2.5]), TypeError, "boundaries"),
    ("join_not_callable", lambda: S.join([S.constant(1.0), 0.5], [10]), TypeError, "schedules"),
    # Values: a schedule drives hyperparameters such as learning rates, never negative.
    ("constant_negative", lambda: S.constant(-0.1), ValueError, "value"),
    ("linear_negative_end", lambda: S.linear(0.1, -0.1, 10), ValueError, "end_value"),
    ("linear_negative_init", lambda: S.linear(-0.1, 0.0, 10), ValueError, "init_value"),
    ("polynomial_negative_power", lambda: S.polynomial(1.0, 0.0, -1, 10), ValueError, "power"),
    ("polynomial_zero_power", lambda: S.polynomial(1.0, 0.0, 0, 10), ValueError, "power"),
    ("cosine_negative_alpha", lambda: S.cosine_decay(1.0, 10, alpha=-1), ValueError, "alpha"),
    ("cosine_alpha_above_one", lambda: S.cosine_decay(1.0, 10, alpha=1.5), ValueError, "alpha"),
    ("cosine_negative_init", lambda: S.cosine_decay(-1.0, 10), ValueError, "init_value"),
    (
        "warmup_negative_init",
        lambda: S.warmup_cosine_decay(-0.1, 1.0, 5, 10),
        ValueError,
        "init_value",
    ),
    (
        "warmup_negative_peak",
        lambda: S.warmup_cosine_decay(0.0, -1.0, 5, 10),
        ValueError,
        "peak_value",
    ),
    (
        "warmup_negative_end",
        lambda: S.warmup_cosine_decay(0.0, 1.0, 5, 10, -0.1),
        ValueError,
        "end_value",
    ),
    (
        "warmup_zero_exponent",
        lambda: S.warmup_cosine_decay(0.0, 1.0, 5, 10, exponent=0.0),
        ValueError,
        "exponent",
    ),
    ("exp_negative_init", lambda: S.exponential_decay(-1.0, 10, 0.5), ValueError, "init_value"),
    (
        "exp_negative_end",
        lambda: S.exponential_decay(1.0, 10, 0.5, end_value=-0.1),
        ValueError,
        "end_value",
    ),
    ("piecewise_negative_init", lambda: S.piecewise_constant(-1.0), ValueError, "init_value"),
    # The new optax schedules.
    (
        "interpolate_type",
        lambda: S.piecewise_interpolate("quadratic", 1.0),
        ValueError,
        "interpolate_type",
    ),
    (
        "interpolate_negative_init",
        lambda: S.piecewise_interpolate("linear", -1.0),
        ValueError,
        "init_value",
    ),
    (
        "interpolate_negative_scale",
        lambda: S.piecewise_interpolate("linear", 1.0, {5: -0.5}),
        ValueError,
        "boundaries_and_scales",
    ),
    (
        "interpolate_negative_boundary",
        lambda: S.piecewise_interpolate("cosine", 1.0, {-1: 0.5}),
        ValueError,
        "boundaries_and_scales",
    ),
    (
        "interpolate_float_boundary",
        lambda: S.piecewise_interpolate("cosine", 1.0, {2.5: 0.5}),
        TypeError,
        "boundaries_and_scales",
    ),
    ("onecycle_zero_steps", lambda: S.linear_onecycle(0, 1.0), ValueError, "transition_steps"),
    ("onecycle_float_steps", lambda: S.linear_onecycle(10.0, 1.0), TypeError, "transition_steps"),
    ("onecycle_negative_peak", lambda: S.linear_onecycle(100, -1.0), ValueError, "peak_value"),
    (
        "onecycle_start_after_final",
        lambda: S.linear_onecycle(100, 1.0, 0.9, 0.5),
        ValueError,
        "pct_start",
    ),
    (
        "onecycle_final_at_end",
        lambda: S.linear_onecycle(100, 1.0, 0.3, 1.0),
        ValueError,
        "pct_final",
    ),
    (
        "onecycle_phases_merge",  # int(3.1) == int(3.5): optax would silently drop the peak
        lambda: S.linear_onecycle(10, 1.0, 0.31, 0.35),
        ValueError,
        "pct_final",
    ),
    (
        "onecycle_negative_start",
        lambda: S.linear_onecycle(100, 1.0, -0.1, 0.5),
        ValueError,
        "pct_start",
    ),
    (
        "onecycle_zero_div",
        lambda: S.linear_onecycle(100, 1.0, div_factor=0.0),
        ValueError,
        "div_factor",
    ),
    (
        "onecycle_negative_final_div",
        lambda: S.linear_onecycle(100, 1.0, final_div_factor=-1.0),
        ValueError,
        "final_div_factor",
    ),
    (
        "warmup_constant_negative_init",
        lambda: S.warmup_constant(-0.1, 1.0, 5),
        ValueError,
        "init_value",
    ),
    (
        "warmup_constant_negative_peak",
        lambda: S.warmup_constant(0.0, -1.0, 5),
        ValueError,
        "peak_value",
    ),
    (
        "warmup_constant_negative_steps",
        lambda: S.warmup_constant(0.0, 1.0, -1),
        ValueError,
        "warmup_steps",
    ),
    (
        "warmup_constant_float_steps",
        lambda: S.warmup_constant(0.0, 1.0, 5.0),
        TypeError,
        "warmup_steps",
    ),
    (
        "warmup_exp_negative_init",
        lambda: S.warmup_exponential_decay(-0.1, 1.0, 5, 10, 0.5),
        ValueError,
        "init_value",
    ),
    (
        "warmup_exp_negative_peak",
        lambda: S.warmup_exponential_decay(0.0, -1.0, 5, 10, 0.5),
        ValueError,
        "peak_value",
    ),
    (
        "warmup_exp_negative_warmup",
        lambda: S.warmup_exponential_decay(0.0, 1.0, -1, 10, 0.5),
        ValueError,
        "warmup_steps",
    ),
    (
        "warmup_exp_zero_transition",
        lambda: S.warmup_exponential_decay(0.0, 1.0, 5, 0, 0.5),
        ValueError,
        "transition_steps",
    ),
    (
        "warmup_exp_zero_rate",
        lambda: S.warmup_exponential_decay(0.0, 1.0, 5, 10, 0.0),
        ValueError,
        "decay_rate",
    ),
    (
        "warmup_exp_negative_begin",
        lambda: S.warmup_exponential_decay(0.0, 1.0, 5, 10, 0.5, -1),
        ValueError,
        "transition_begin",
    ),
    (
        "warmup_exp_negative_end",
        lambda: S.warmup_exponential_decay(0.0, 1.0, 5, 10, 0.5, end_value=-0.1),
        ValueError,
        "end_value",
    ),
]


@pytest.mark.parametrize(("make", "error", "name"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments_raise_naming_the_argument(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_negative_value_error_says_why():
    with pytest.raises(ValueError, match="never negative.*plain function"):
        S.linear(0.1, -0.1, 10)


def test_warmup_cosine_decay_may_rise_to_an_end_above_the_peak():
    """``alpha = end / peak`` above 1 is a cosine rise, not an out-of-range ``alpha``."""
    steps = list(range(0, 40))
    ours = _on_steps(S.warmup_cosine_decay(0.0, 0.5, 5, 30, end_value=1.0), steps)
    _assert_close(ours, [ref_warmup_cosine(0.0, 0.5, 5, 30, end=1.0)(s) for s in steps], RTOL)


def test_warmup_constant_without_warmup_is_the_peak_where_optax_stays_at_init():
    """optix: zero warm-up steps means ``peak_value`` from step 0. optax's zero-length linear
    schedule is ``init_value`` for ever instead (``constant(init_value)`` gives that in optix)."""
    steps = [0, 1, 100]
    ours = _on_steps(S.warmup_constant(0.1, 0.9, 0), steps)
    with jax.numpy_dtype_promotion("standard"):
        theirs = _on_steps(jax.vmap(optax.warmup_constant_schedule(0.1, 0.9, 0)), steps)
    _assert_close(ours, [0.9] * 3, RTOL)
    _assert_close(theirs, [0.1] * 3, RTOL)


def test_linear_onecycle_is_piecewise_interpolate_of_its_corners():
    """The optax definition, written with the optix building block."""
    steps = list(range(0, 120))
    ours = _on_steps(S.linear_onecycle(100, 2.0, 0.25, 0.75, 4.0, 10.0), steps)
    same = S.piecewise_interpolate("linear", 0.5, {25: 4.0, 75: 0.25, 100: 0.1})
    np.testing.assert_array_equal(ours, _on_steps(same, steps))


# ---------------------------------------------------------------------------------------------
# A schedule as a learning rate.
# ---------------------------------------------------------------------------------------------

# Schedules whose value changes from one step to the next, so a count off by one shows.
LR_CASES = {
    "warmup_cosine": lambda: S.warmup_cosine_decay(0.01, 0.5, 4, 20, end_value=0.02),
    "piecewise": lambda: S.piecewise_constant(0.3, {3: 0.5, 9: 0.1, 10: 0.7}),
    "join": lambda: S.join([S.linear(0.0, 0.4, 5), S.exponential_decay(0.4, 3, 0.7)], [5]),
    "linear": lambda: S.linear(0.05, 0.3, 30),
}
N_LR_STEPS = 25


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", list(LR_CASES))
def test_schedule_as_sgd_learning_rate(name, dtype):
    sched = LR_CASES[name]()
    values = _on_steps(sched, list(range(N_LR_STEPS)))  # the schedule's own value at each step
    lr = lambda k: float(values[k])  # noqa: E731
    tx = optix.sgd(sched)
    rng = np.random.default_rng(0)
    params = {"a": jnp.zeros((), dtype), "b": jnp.zeros((3, 2), dtype)}
    state = tx.init(params)
    # Right after init, the state reads schedule(0), the value the first update will use.
    read = optix.get_hyperparams(state)["learning_rate"]
    assert read.dtype == jnp.float32
    assert float(read) == pytest.approx(lr(0), rel=RTOL)
    update = jax.jit(tx.update)
    for k in range(N_LR_STEPS):
        grads_np = {
            "a": np.asarray(rng.normal(), dtype),
            "b": np.asarray(rng.normal(size=(3, 2)), dtype),
        }
        grads = {key: jnp.asarray(g) for key, g in grads_np.items()}
        updates, state = update(grads, state, params)
        for key, g in grads_np.items():
            assert updates[key].dtype == dtype
            # The step is formed in float32 and rounded once to the leaf's dtype.
            want = (-(np.float32(lr(k)) * g.astype(np.float32))).astype(dtype)
            np.testing.assert_allclose(
                np.asarray(updates[key]).astype(np.float32),
                want.astype(np.float32),
                rtol=RTOL if dtype == jnp.float32 else 2**-8,
                atol=1e-7,
            )
        # After k + 1 updates the state reads the value update k used: schedule(k).
        read = optix.get_hyperparams(state)["learning_rate"]
        assert read.dtype == jnp.float32
        assert float(read) == pytest.approx(lr(k), rel=RTOL), f"after update {k}"
    assert int(state[-1].hyperparams.count) == N_LR_STEPS
