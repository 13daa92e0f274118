"""The cyclic and decay schedules: textbook definitions, torch.optim.lr_scheduler and optax.

Each case has the optix schedule and its textbook definition written here as plain Python on
floats, from the paper (one-cycle: Smith & Topin 2019; SGDR: Loshchilov & Hutter 2017, eq. 5;
cyclical rates: Smith 2017, section 3.1; inverse square root: Vaswani et al. 2017, eq. 3; WSD:
Hägele et al. 2024, section 3). Where torch or optax has the same schedule, it is checked too.
Tolerances as in test_schedules.py: float32 against float64 ``rtol=1e-6`` (atol relative to the
schedule's scale); float64 ``rtol=1e-12``; against torch (float64 Python math) ``rtol=1e-6`` in
float32 and ``1e-12`` with x64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optix import schedules as S
from tests.test_schedules import BIG
from tests.test_schedules import CYCLIC_DECAY_NAMES
from tests.test_schedules import HUGE_STEPS
from tests.test_schedules import _assert_close
from tests.test_schedules import jit_step_by_step

torch = pytest.importorskip("torch")

RTOL = 1e-6
RTOL_X64 = 1e-12

Ref = Callable[[int], float]


# ---------------------------------------------------------------------------------------------
# Textbook definitions.
# ---------------------------------------------------------------------------------------------


def ref_one_cycle(total, peak, pct, div, final_div, anneal="cosine", three=False) -> Ref:
    low = peak / div
    final = low / final_div
    e1 = pct * total - 1
    if three:
        phases = [(0, e1, low, peak), (e1, 2 * e1, peak, low), (2 * e1, total - 1, low, final)]
    else:
        phases = [(0, e1, low, peak), (e1, total - 1, peak, final)]

    def interp(a, b, p):
        if anneal == "cosine":
            return b + (a - b) / 2 * (1 + math.cos(math.pi * p))
        return a + (b - a) * p

    def f(s):
        if s >= total - 1:
            return final
        for begin, end, a, b in phases:
            if s <= end:
                return interp(a, b, (s - begin) / (end - begin))
        raise AssertionError

    return f


def ref_sgdr(v0, t0, mult=1, vmin=0.0, decay=1.0) -> Ref:
    def f(s):
        i, begin, length = 0, 0, t0
        while s >= begin + length:  # walk the cycles: eq. 5's T_cur and T_i
            begin += length
            length *= mult
            i += 1
        t = s - begin
        return vmin + 0.5 * (v0 * decay**i - vmin) * (1 + math.cos(math.pi * t / length))

    return f


def ref_cyclic(base, top, up, down, mode="triangular", gamma=1.0) -> Ref:
    def f(s):
        period = up + down
        c, x = divmod(s, period)
        height = x / up if x <= up else (period - x) / down
        scale = {"triangular": 1.0, "triangular2": 0.5**c, "exp_range": gamma**s}[mode]
        return base + (top - base) * height * scale

    return f


def ref_wsd(peak, total, warmup, decay, init=0.0, end=0.0, shape="linear") -> Ref:
    def f(s):
        if s < warmup:
            return init + (peak - init) * s / warmup
        if s <= total - decay:
            return peak
        p = min((s - (total - decay)) / decay, 1.0)
        factor = {
            "linear": 1 - p,
            "cosine": 0.5 * (1 + math.cos(math.pi * p)),
            "sqrt": 1 - math.sqrt(p),
        }[shape]
        return end + (peak - end) * factor

    return f


def ref_inverse_sqrt(peak, warmup, init=0.0) -> Ref:
    def f(s):
        if s < warmup:
            return init + (peak - init) * s / warmup
        return peak * min(1.0, math.sqrt(max(warmup, 1) / max(s, 1)))

    return f


def ref_inverse_time(v0, rate, steps=1, staircase=False) -> Ref:
    def f(s):
        p = s // steps if staircase else s / steps
        return v0 / (1 + rate * p)

    return f


def ref_step(v0, size, gamma) -> Ref:
    return lambda s: v0 * gamma ** (s // size)


# ---------------------------------------------------------------------------------------------
# torch schedulers: the lr torch's optimizer would use at update k (0-based).
# ---------------------------------------------------------------------------------------------


def torch_lrs(make_scheduler, steps: int, base_lr: float = 1.0) -> np.ndarray:
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.asarray(lrs, np.float64)


LR = torch.optim.lr_scheduler


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], Callable]
    ref: Ref
    end: int
    torch: Callable | None = None  # optimizer -> scheduler, with base lr 1.0 unless set
    torch_steps: int | None = None  # how many steps torch can run (OneCycleLR stops at T)
    torch_lr: float = 1.0  # the optimizer's base lr that torch's scheduler multiplies

    def steps(self) -> list[int]:
        return [*range(0, self.end + 12), 2 * self.end + 3, 10 * self.end + 7, 100_000]


CASES = [
    Case(
        "one_cycle_cosine",
        lambda: S.one_cycle(60, 0.8, pct_start=0.3),
        ref_one_cycle(60, 0.8, 0.3, 25.0, 1e4),
        60,
        lambda o: LR.OneCycleLR(o, max_lr=0.8, total_steps=60, pct_start=0.3),
        60,
    ),
    Case(
        "one_cycle_linear",
        lambda: S.one_cycle(45, 2.0, pct_start=0.2, div_factor=10.0, anneal="linear"),
        ref_one_cycle(45, 2.0, 0.2, 10.0, 1e4, anneal="linear"),
        45,
        lambda o: LR.OneCycleLR(
            o, max_lr=2.0, total_steps=45, pct_start=0.2, div_factor=10.0, anneal_strategy="linear"
        ),
        45,
    ),
    Case(
        "one_cycle_three_phase",
        lambda: S.one_cycle(50, 1.0, pct_start=0.25, final_div_factor=100.0, three_phase=True),
        ref_one_cycle(50, 1.0, 0.25, 25.0, 100.0, three=True),
        50,
        lambda o: LR.OneCycleLR(
            o, max_lr=1.0, total_steps=50, pct_start=0.25, final_div_factor=100.0, three_phase=True
        ),
        50,
    ),
    Case(
        "sgdr_equal_periods",
        lambda: S.sgdr(0.5, 12, min_value=0.01),
        ref_sgdr(0.5, 12, vmin=0.01),
        48,
        lambda o: LR.CosineAnnealingWarmRestarts(o, T_0=12, eta_min=0.01),
        torch_lr=0.5,
    ),
    Case(
        "sgdr_doubling",
        lambda: S.sgdr(1.0, 5, period_mult=2, min_value=0.001),
        ref_sgdr(1.0, 5, mult=2, vmin=0.001),
        75,
        lambda o: LR.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.001),
    ),
    Case(
        "sgdr_tripling_decay",
        lambda: S.sgdr(1.0, 4, period_mult=3, peak_decay=0.5),
        ref_sgdr(1.0, 4, mult=3, decay=0.5),
        52,
    ),
    Case(
        "cyclic_triangular",
        lambda: S.cyclic(0.1, 1.0, 5),
        ref_cyclic(0.1, 1.0, 5, 5),
        30,
        lambda o: LR.CyclicLR(o, 0.1, 1.0, step_size_up=5, cycle_momentum=False),
    ),
    Case(
        "cyclic_triangular2_asymmetric",
        lambda: S.cyclic(0.2, 1.4, 3, 7, mode="triangular2"),
        ref_cyclic(0.2, 1.4, 3, 7, "triangular2"),
        40,
        lambda o: LR.CyclicLR(
            o, 0.2, 1.4, step_size_up=3, step_size_down=7, mode="triangular2", cycle_momentum=False
        ),
    ),
    Case(
        "cyclic_exp_range",
        lambda: S.cyclic(0.05, 1.0, 4, mode="exp_range", gamma=0.97),
        ref_cyclic(0.05, 1.0, 4, 4, "exp_range", 0.97),
        40,
        lambda o: LR.CyclicLR(
            o, 0.05, 1.0, step_size_up=4, mode="exp_range", gamma=0.97, cycle_momentum=False
        ),
    ),
    Case(
        "warmup_stable_decay_linear",
        lambda: S.warmup_stable_decay(1.0, 50, 8, 12, init_value=0.1, end_value=0.01),
        ref_wsd(1.0, 50, 8, 12, init=0.1, end=0.01),
        50,
    ),
    Case(
        "warmup_stable_decay_cosine_no_warmup",
        lambda: S.warmup_stable_decay(0.3, 40, 0, 15, decay_shape="cosine"),
        ref_wsd(0.3, 40, 0, 15, shape="cosine"),
        40,
    ),
    Case(
        "warmup_stable_decay_sqrt",
        lambda: S.warmup_stable_decay(2.0, 30, 5, 10, decay_shape="sqrt"),
        ref_wsd(2.0, 30, 5, 10, shape="sqrt"),
        30,
    ),
    Case("inverse_sqrt", lambda: S.inverse_sqrt(1.0, 16), ref_inverse_sqrt(1.0, 16), 40),
    Case(
        "inverse_sqrt_init_no_warmup",
        lambda: S.inverse_sqrt(0.5, 0, init_value=0.2),
        ref_inverse_sqrt(0.5, 0, init=0.2),
        20,
    ),
    Case(
        "inverse_sqrt_warmup_from_init",
        lambda: S.inverse_sqrt(0.5, 10, init_value=0.05),
        ref_inverse_sqrt(0.5, 10, init=0.05),
        30,
    ),
    Case(
        "inverse_time_decay",
        lambda: S.inverse_time_decay(1.0, 0.5, 7),
        ref_inverse_time(1.0, 0.5, 7),
        40,
    ),
    Case(
        "inverse_time_decay_staircase",
        lambda: S.inverse_time_decay(0.3, 2.0, 5, staircase=True),
        ref_inverse_time(0.3, 2.0, 5, True),
        40,
    ),
    Case(
        "step_decay",
        lambda: S.step_decay(1.0, 7, gamma=0.5),
        ref_step(1.0, 7, 0.5),
        40,
        lambda o: LR.StepLR(o, step_size=7, gamma=0.5),
    ),
]
IDS = [c.id for c in CASES]
TORCH_CASES = [c for c in CASES if c.torch is not None]


def _values(sched, steps, dtype=jnp.int32) -> np.ndarray:
    out = jax.jit(sched)(jnp.asarray(steps, dtype))
    return np.broadcast_to(np.asarray(out, np.float64), (len(steps),))


def test_every_new_schedule_has_cases():
    covered = {name for name in CYCLIC_DECAY_NAMES if any(c.id.startswith(name) for c in CASES)}
    assert covered == CYCLIC_DECAY_NAMES
    assert CYCLIC_DECAY_NAMES <= set(S.__all__)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_textbook_under_jit(case):
    steps = case.steps()
    out = jit_step_by_step(case.make(), steps)
    _assert_close(out, [case.ref(s) for s in steps], RTOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_with_x64(case, x64):
    steps = case.steps()
    out = jax.jit(case.make())(jnp.asarray(steps, jnp.int64))
    assert out.dtype == jnp.float64
    _assert_close(np.asarray(out), [case.ref(s) for s in steps], RTOL_X64)


@pytest.mark.parametrize("case", TORCH_CASES, ids=[c.id for c in TORCH_CASES])
def test_matches_torch_scheduler(case, x64):
    n = case.torch_steps or case.end + 12
    theirs = torch_lrs(case.torch, n, case.torch_lr)
    ours = _values(case.make(), list(range(n)), jnp.int64)
    _assert_close(ours, theirs, RTOL_X64)


def test_sgdr_matches_optax_sgdr_schedule():
    ours = _values(S.sgdr(0.5, 12, min_value=0.05), list(range(60)))
    pieces = [
        dict(init_value=0.5, peak_value=0.5, decay_steps=12, warmup_steps=0, end_value=0.05)
    ] * 5
    with jax.numpy_dtype_promotion("standard"):
        theirs = _values(optax.sgdr_schedule(pieces), list(range(60)))
    _assert_close(ours, theirs, RTOL)


def test_one_cycle_peaks_a_step_before_optax_cosine_onecycle():
    """optix follows torch: the warm-up ends at step pct * T - 1; optax's at pct * T."""
    total, pct = 40, 0.25
    steps = list(range(total))
    ours = _values(S.one_cycle(total, 1.0, pct_start=pct), steps)
    with jax.numpy_dtype_promotion("standard"):
        optax_sched = jax.jit(optax.cosine_onecycle_schedule(total, 1.0, pct_start=pct))
        theirs = np.array([float(optax_sched(jnp.int32(s))) for s in steps])
    assert int(np.argmax(ours)) == pct * total - 1
    assert int(np.argmax(theirs)) == pct * total
    assert ours[0] == pytest.approx(theirs[0], rel=RTOL)  # both start at peak / div_factor
    assert not np.allclose(ours, theirs, rtol=1e-3)


# Lengths beyond the int32 range (they overflowed before), steps up to 2^31 - 1.
HUGE = [
    (
        "one_cycle",
        lambda: S.one_cycle(3 * 10**9, 1.0),
        ref_one_cycle(3 * 10**9, 1.0, 0.3, 25.0, 1e4),
    ),
    (
        "one_cycle_three_phase_linear",
        lambda: S.one_cycle(BIG, 1.0, 0.1, anneal="linear", three_phase=True),
        ref_one_cycle(BIG, 1.0, 0.1, 25.0, 1e4, anneal="linear", three=True),
    ),
    ("sgdr", lambda: S.sgdr(1.0, BIG), ref_sgdr(1.0, BIG)),
    (
        "sgdr_doubling",
        lambda: S.sgdr(1.0, 5 * 10**8, period_mult=2, min_value=0.1),
        ref_sgdr(1.0, 5 * 10**8, mult=2, vmin=0.1),
    ),
    ("cyclic", lambda: S.cyclic(0.1, 1.0, BIG), ref_cyclic(0.1, 1.0, BIG, BIG)),
    (
        "cyclic_triangular2",
        lambda: S.cyclic(0.1, 1.0, 10**9, 2 * 10**9, mode="triangular2"),
        ref_cyclic(0.1, 1.0, 10**9, 2 * 10**9, "triangular2"),
    ),
    (
        "warmup_stable_decay",
        lambda: S.warmup_stable_decay(1.0, 3 * 10**9, 10**9, 15 * 10**8, 0.1, 0.01, "cosine"),
        ref_wsd(1.0, 3 * 10**9, 10**9, 15 * 10**8, 0.1, 0.01, "cosine"),
    ),
    ("inverse_sqrt", lambda: S.inverse_sqrt(1.0, BIG), ref_inverse_sqrt(1.0, BIG)),
    (
        "inverse_sqrt_from_init",
        lambda: S.inverse_sqrt(1.0, 10**9, init_value=0.1),
        ref_inverse_sqrt(1.0, 10**9, init=0.1),
    ),
    (
        "inverse_time_decay",
        lambda: S.inverse_time_decay(1.0, 0.5, BIG),
        ref_inverse_time(1.0, 0.5, BIG),
    ),
    (
        "inverse_time_decay_staircase",
        lambda: S.inverse_time_decay(1.0, 0.5, 10**9, staircase=True),
        ref_inverse_time(1.0, 0.5, 10**9, staircase=True),
    ),
    ("step_decay", lambda: S.step_decay(1.0, BIG), ref_step(1.0, BIG, 0.1)),
    (
        "step_decay_drops_at_the_exact_step",
        lambda: S.step_decay(1.0, 10**9, 0.5),
        ref_step(1.0, 10**9, 0.5),
    ),
]


def test_every_cyclic_and_decay_schedule_has_a_huge_case():
    assert {
        name for name in CYCLIC_DECAY_NAMES if any(i.startswith(name) for i, _, _ in HUGE)
    } == CYCLIC_DECAY_NAMES


@pytest.mark.parametrize(("make", "ref"), [h[1:] for h in HUGE], ids=[h[0] for h in HUGE])
def test_huge_lengths_match_textbook_under_jit(make, ref):
    steps = list(HUGE_STEPS)
    _assert_close(jit_step_by_step(make(), steps), [ref(s) for s in steps], RTOL)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: S.one_cycle(100, -1.0), "peak_value"),
        (lambda: S.sgdr(-1.0, 5), "init_value"),
        (lambda: S.sgdr(1.0, 5, min_value=-0.1), "min_value"),
        (lambda: S.cyclic(-0.1, 1.0, 3), "base_value"),
        (lambda: S.cyclic(0.1, -1.0, 3), "max_value"),
        (lambda: S.cyclic(0.1, 1.0, 3, mode="exp_range", gamma=1.5), "gamma"),
        (lambda: S.warmup_stable_decay(-1.0, 10, 2, 3), "peak_value"),
        (lambda: S.warmup_stable_decay(1.0, 10, 2, 3, init_value=-0.1), "init_value"),
        (lambda: S.warmup_stable_decay(1.0, 10, 2, 3, end_value=-0.1), "end_value"),
        (lambda: S.inverse_sqrt(-1.0, 10), "peak_value"),
        (lambda: S.inverse_sqrt(1.0, 10, init_value=-0.1), "init_value"),
        (lambda: S.inverse_time_decay(-1.0, 0.1), "init_value"),
        (lambda: S.step_decay(-1.0, 5), "init_value"),
        (lambda: S.one_cycle(1, 1.0), "total_steps"),
        (lambda: S.one_cycle(10, 1.0, pct_start=0.05), "pct_start"),
        (lambda: S.one_cycle(10, 1.0, pct_start=1.0), "pct_start"),
        (lambda: S.one_cycle(100, 1.0, pct_start=0.6, three_phase=True), "pct_start"),
        (lambda: S.one_cycle(100, 1.0, div_factor=0.0), "div_factor"),
        (lambda: S.one_cycle(100, 1.0, anneal="cos"), "anneal"),
        (lambda: S.sgdr(1.0, 0), "first_period"),
        (lambda: S.sgdr(1.0, 5, period_mult=0), "period_mult"),
        (lambda: S.sgdr(1.0, 5, peak_decay=1.5), "peak_decay"),
        (lambda: S.cyclic(0.1, 1.0, 0), "step_size_up"),
        (lambda: S.cyclic(0.1, 1.0, 3, 0), "step_size_down"),
        (lambda: S.cyclic(0.1, 1.0, 3, mode="sine"), "mode"),
        (lambda: S.cyclic(0.1, 1.0, 3, mode="exp_range", gamma=-1.0), "gamma"),
        (lambda: S.warmup_stable_decay(1.0, 10, 6, 6), "total_steps"),
        (lambda: S.warmup_stable_decay(1.0, 10, 2, 0), "decay_steps"),
        (lambda: S.warmup_stable_decay(1.0, 10, 2, 3, decay_shape="exp"), "decay_shape"),
        (lambda: S.inverse_sqrt(1.0, -1), "warmup_steps"),
        (lambda: S.inverse_time_decay(1.0, -0.1), "decay_rate"),
        (lambda: S.inverse_time_decay(1.0, 0.1, 0), "decay_steps"),
        (lambda: S.step_decay(1.0, 0), "step_size"),
        (lambda: S.step_decay(float("nan"), 5), "init_value"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_schedule_drives_a_learning_rate_without_recompiling(case):
    import optix

    tx = optix.sgd(case.make())
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state):
        return tx.update({"w": jnp.ones(3)}, state, params)

    for k in range(5):
        updates, state = step(state)
        np.testing.assert_allclose(updates["w"], -case.ref(k), rtol=RTOL, atol=RTOL)
