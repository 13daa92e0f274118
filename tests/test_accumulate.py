"""Gradient accumulation: ``accumulate(inner, k)`` over k micro-batches is one inner step on the
mean gradient, which for a mean loss over equal micro-batches is the gradient of the whole batch.

References are independent: the unwrapped optimizer fed the whole batch's gradient (or the mean
gradient computed here with NumPy), step for step.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix.wrappers._accumulate import AccumulateState
from optix.wrappers._accumulate import accumulate
from tests.cases import CASES
from tests.cases import IDS
from tests.reference import N_STEPS
from tests.reference import assert_updates_close
from tests.reference import gradient_stream
from tests.reference import params_stream
from tests.test_contract import _params

K = 4


def _signature(tree):
    return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


def _mlp_problem(dtype):
    """A one-hidden-layer tanh MLP regression, mean squared error over 64 points (4 x 16)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    y = np.sin(x @ rng.normal(size=3))[:, None]
    params = {
        "hidden": {"w": rng.normal(size=(3, 8)) / 2, "b": np.zeros((1, 8))},
        "out": {"w": rng.normal(size=(8, 1)) / 3, "b": np.zeros((1, 1))},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)

    def loss(p, xb, yb):
        h = jnp.tanh(xb @ p["hidden"]["w"] + p["hidden"]["b"])
        return jnp.mean((h @ p["out"]["w"] + p["out"]["b"] - yb) ** 2)

    return loss, params, jnp.asarray(x, dtype), jnp.asarray(y, dtype)


@pytest.mark.parametrize(
    "dtype, rtol, atol",
    # float64: both runs agree to rounding (observed 1e-14 relative). float32: the summation
    # order differs (mean of 4 micro-batch means vs one mean of 64); over 20 steps the observed
    # gap is 6e-8 absolute on O(1) params (6e-6 relative, on near-zero biases).
    [("float64", 1e-10, 1e-12), ("float32", 2e-5, 2e-6)],
)
def test_accumulate_adam_equals_adam_on_the_whole_batch(dtype, rtol, atol):
    with jax.enable_x64(dtype == "float64"):
        loss, params, x, y = _mlp_problem(jnp.dtype(dtype))
        adam = optix.adam(1e-2)
        big, small = adam, accumulate(optix.adam(1e-2), K)
        grad = jax.grad(loss)

        @jax.jit
        def big_step(p, s):
            u, s = big.update(grad(p, x, y), s, p)
            return optix.apply_updates(p, u), s

        @jax.jit
        def small_step(p, s, xb, yb):
            u, s = small.update(grad(p, xb, yb), s, p)
            return optix.apply_updates(p, u), s, u

        p_big, s_big = params, big.init(params)
        p_small, s_small = params, small.init(params)
        xs, ys = x.reshape(K, -1, 3), y.reshape(K, -1, 1)
        for _ in range(20):
            p_big, s_big = big_step(p_big, s_big)
            for j in range(K):
                before = p_small
                p_small, s_small, u = small_step(p_small, s_small, xs[j], ys[j])
                if j < K - 1:  # micro-steps: zero updates, params unchanged
                    for leaf in jax.tree.leaves(u):
                        np.testing.assert_array_equal(leaf, 0)
                    chex.assert_trees_all_equal(p_small, before)
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol),
                p_small,
                p_big,
            )
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol),
            s_small.inner_state,
            s_big,
        )
        assert int(s_small.micro_step) == 0


def _grads(params, rng):
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_optimizer_matches_itself_on_the_mean_gradient(case):
    k, outer = 3, 3
    wrapped, plain = accumulate(case.make(), k), case.make()
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s, g):
        u, s = wrapped.update(g, s, p)
        return optix.apply_updates(p, u), s, u

    plain_step = jax.jit(lambda p, s, g: plain.update(g, s, p))
    rng = np.random.default_rng(3)
    params = _params()
    p, s = params, wrapped.init(params)
    p_ref, s_ref = params, plain.init(params)
    assert _signature(jax.eval_shape(wrapped.init, params)) == _signature(s)
    for _ in range(outer):
        micro = [_grads(params, rng) for _ in range(k)]
        for j, g in enumerate(micro):
            inner_before = s.inner_state
            p, s_new, u = step(p, s, g)
            assert _signature(s_new) == _signature(s)
            if j < k - 1:
                for leaf in jax.tree.leaves(u):
                    np.testing.assert_array_equal(leaf, 0)
                chex.assert_trees_all_equal(s_new.inner_state, inner_before)
            s = s_new
        mean = jax.tree.map(
            lambda *gs: jnp.asarray(np.sum(np.stack(gs), axis=0) / k, gs[0].dtype), *micro
        )
        u_ref, s_ref = plain_step(p_ref, s_ref, mean)
        p_ref = optix.apply_updates(p_ref, u_ref)
        # float32 with the same summation order; only fusion differences remain (~1 ulp).
        chex.assert_trees_all_close(u, u_ref, rtol=1e-5, atol=_atol(case))
        chex.assert_trees_all_close(p, p_ref, rtol=1e-5, atol=_atol(case))


def _atol(case):
    """Float tolerance, except where the rule magnifies a 1-ulp difference in the gradient:
    eigenvalue-corrected Shampoo's rotated gradient is diagonal at a refresh in exact arithmetic,
    and Adam's scaling in the eigenbasis divides its off-diagonal round-off by its own magnitude,
    moving the step's small entries by up to 5 %: checked to 10 % of a step there."""
    if case.name == "shampoo_eigenvalue_corrected":
        return 0.1 * case.kwargs["learning_rate"] * case.step_scale
    return 1e-6


def test_bf16_params_accumulate_in_float32():
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.bfloat16)}
    wrapped, plain = accumulate(optix.adam(1e-2), K), optix.adam(1e-2)
    state = wrapped.init(params)
    assert state.acc["w"].dtype == jnp.float32
    step = jax.jit(lambda g, s, p: wrapped.update(g, s, p))
    rng = np.random.default_rng(5)
    p, p_ref, s_ref = params, params, plain.init(params)
    for _ in range(5):
        micro = [rng.normal(size=(4, 3)).astype(jnp.bfloat16) for _ in range(K)]
        for g in micro:
            u, state = step({"w": jnp.asarray(g)}, state, p)
            assert u["w"].dtype == jnp.bfloat16
            p = optix.apply_updates(p, u)
        # the mean in float32 (exact here: sums of 4 bf16 values), rounded once to bf16
        mean = (np.sum(np.stack(micro).astype(np.float32), axis=0) / K).astype(jnp.bfloat16)
        u_ref, s_ref = plain.update({"w": jnp.asarray(mean)}, s_ref, p_ref)
        p_ref = optix.apply_updates(p_ref, u_ref)
        assert p["w"].dtype == jnp.bfloat16
        # Observed bitwise equal on CPU; one bf16 ulp (2**-8 relative) is allowed for fusion
        # differences in the float32 math before the final rounding. A bf16 buffer is not exact
        # here and differs by more after a few steps.
        for a, b in [(u, u_ref), (p, p_ref)]:
            np.testing.assert_allclose(
                np.asarray(a["w"], np.float32), np.asarray(b["w"], np.float32), rtol=2**-8
            )


def test_float32_buffer_avoids_bf16_rounding_of_the_sum():
    # 300 gradients of 1.0: a bf16 running sum stops growing at 256 (8-bit mantissa), so its mean
    # would be 256/300; the default float32 buffer gives exactly 1.
    k = 300
    g = {"w": jnp.ones(2, jnp.bfloat16)}

    def run(tx):
        state = tx.init(g)
        step = jax.jit(lambda s: tx.update(g, s))
        for _ in range(k):
            u, state = step(state)
        return np.asarray(u["w"], np.float32)

    np.testing.assert_array_equal(run(accumulate(optix.sgd(1.0), k)), -1.0)
    lossy = run(accumulate(optix.sgd(1.0), k, acc_dtype=jnp.bfloat16))
    np.testing.assert_allclose(lossy, -256 / 300, rtol=1e-2)


def test_acc_dtype_and_complex_leaves():
    params = {"r": jnp.zeros(2, jnp.float32), "c": jnp.zeros(2, jnp.complex64)}
    state = accumulate(optix.sgd(1.0), 2).init(params)
    assert state.acc["r"].dtype == jnp.float32 and state.acc["c"].dtype == jnp.complex64
    state = accumulate(optix.sgd(1.0), 2, acc_dtype=jnp.bfloat16).init(params)
    assert state.acc["r"].dtype == jnp.bfloat16 and state.acc["c"].dtype == jnp.complex64

    tx = accumulate(optix.sgd(1.0), 2)
    state = tx.init(params)
    g1 = {"r": jnp.array([1.0, 2.0]), "c": jnp.array([1 + 1j, 2j], jnp.complex64)}
    g2 = {"r": jnp.array([3.0, 0.0]), "c": jnp.array([1 - 3j, 0], jnp.complex64)}
    _, state = tx.update(g1, state)
    u, state = tx.update(g2, state)
    np.testing.assert_allclose(u["r"], [-2.0, -1.0])
    np.testing.assert_allclose(u["c"], [-(1 - 1j), -1j])
    assert u["c"].dtype == jnp.complex64


def test_inner_gets_the_kth_micro_steps_params_and_extra_arguments():
    def init(params):
        return optix.EmptyState()

    def update(updates, state, params=None, *, value=1.0, **extra):
        # mean gradient + params, times the `value` keyword
        out = jax.tree.map(lambda u, p: (u + p) * value, updates, params)
        return out, state

    tx = accumulate(optix.GradientTransformation(init, update), 3)
    state = tx.init(jnp.zeros(2))
    grads = [jnp.array([1.0, 2.0]), jnp.array([2.0, 2.0]), jnp.array([3.0, 5.0])]
    params = [jnp.array([10.0, 20.0]), jnp.array([30.0, 40.0]), jnp.array([50.0, 60.0])]
    for j in range(3):
        u, state = tx.update(grads[j], state, params[j], value=float(j + 1))
    np.testing.assert_allclose(u, (np.array([2.0, 3.0]) + params[2]) * 3.0)

    # an inner `update` without **kwargs (optax-style) gets no extra arguments
    def strict_update(updates, state, params=None):
        return updates, state

    tx = accumulate(optix.GradientTransformation(init, strict_update), 1)
    u, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), value=3.0)
    np.testing.assert_array_equal(u, 1.0)


def test_state_is_a_scan_carry_and_works_with_every_k_1():
    params = {"w": jnp.zeros(3)}
    tx = accumulate(optix.adam(0.1), 2)
    state = tx.init(params)
    assert isinstance(state, AccumulateState)
    assert state.micro_step.dtype == jnp.int32

    def body(carry, g):
        p, s = carry
        u, s = tx.update({"w": g}, s, p)
        return (optix.apply_updates(p, u), s), None

    grads = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    (p_scan, _), _ = jax.lax.scan(body, (params, state), grads)

    ref, s_ref, p_ref = optix.adam(0.1), None, params
    s_ref = ref.init(params)
    for pair in grads.reshape(3, 2, 3):
        u, s_ref = ref.update({"w": jnp.mean(pair, axis=0)}, s_ref, p_ref)
        p_ref = optix.apply_updates(p_ref, u)
    np.testing.assert_allclose(p_scan["w"], p_ref["w"], rtol=1e-6)

    one = accumulate(optix.sgd(0.5), 1)
    u, _ = one.update({"w": jnp.ones(3)}, one.init(params))
    np.testing.assert_array_equal(u["w"], -0.5)


@pytest.mark.parametrize("every_k", [0, -2])
def test_every_k_below_one_is_rejected(every_k):
    with pytest.raises(ValueError, match="every_k"):
        accumulate(optix.sgd(0.1), every_k)


@pytest.mark.parametrize("every_k", [2.0, True, "4", None])
def test_every_k_must_be_an_int(every_k):
    with pytest.raises(TypeError, match="every_k"):
        accumulate(optix.sgd(0.1), every_k)


def test_bad_inner_acc_dtype_and_tree_are_rejected():
    with pytest.raises(TypeError, match="inner"):
        accumulate(optix.sgd, 2)
    with pytest.raises(TypeError, match="acc_dtype"):
        accumulate(optix.sgd(0.1), 2, acc_dtype=jnp.int32)
    tx = accumulate(optix.sgd(0.1), 2)
    state = tx.init({"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match="'v'"):
        tx.update({"v": jnp.zeros(2)}, state)


def test_none_leaves_and_vmap_over_params():
    # None marks a masked-out leaf: no buffer, no update, and the rest is unaffected
    tx = accumulate(optix.adam(0.1), 2)
    params = {"a": jnp.ones((3, 2)), "frozen": None}
    state = jax.vmap(tx.init)(params)
    assert state.acc["frozen"] is None
    step = jax.vmap(lambda g, s, p: tx.update(g, s, p))
    for _ in range(2):
        u, state = step(params, state, params)
    assert u["frozen"] is None
    np.testing.assert_allclose(u["a"], -0.1, rtol=1e-5)  # Adam's first step: -lr * sign(g)


def _every_k(n):
    return 1 + n % 3  # 1, 2, 3, 1, 2, 3, ... micro-steps per inner step


def test_schedule_matches_optax_multisteps_step_by_step(x64):
    """``every_k`` as a schedule of the inner step count, against ``optax.MultiSteps`` with
    ``every_k_schedule``, teacher-forced in float64 (same gradient and params every micro-step):
    the updates agree at every micro-step (optax averages incrementally, optix sums and divides:
    a few ulps apart), and so does ``accumulate_has_updated`` with ``MultiSteps.has_updated``."""
    ours = accumulate(optix.adam(0.05), _every_k)
    multi = optax.MultiSteps(optax.adam(0.05), _every_k, accumulator_dtype=jnp.float64)
    grads, params = gradient_stream(5), params_stream(5)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    s_ours, s_theirs = ours.init(as_jax(params[0])), multi.init(as_jax(params[0]))
    assert not bool(optix.accumulate_has_updated(s_ours))
    step_ours = jax.jit(lambda g, s, p: ours.update(g, s, p))
    step_theirs = jax.jit(multi.update)
    flags = []
    for t in range(N_STEPS):
        g, p = as_jax(grads[t]), as_jax(params[t])
        u_ours, s_ours = step_ours(g, s_ours, p)
        with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict promotion
            u_theirs, s_theirs = step_theirs(g, s_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, "accumulate(every_k=schedule)")
        flags.append(bool(optix.accumulate_has_updated(s_ours)))
        assert flags[-1] == bool(multi.has_updated(s_theirs)), t
        assert int(s_ours.gradient_step) == int(s_theirs.gradient_step)
    # the cycles really were 1, 2, 3, 1, ... micro-steps long
    assert flags[:7] == [True, False, True, False, False, True, True]


def test_schedule_is_read_per_cycle_under_one_compiled_step():
    tx = accumulate(optix.sgd(1.0), lambda n: jnp.where(n < 1, 3, 1))  # 3, then 1, 1, ...
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state):
        return tx.update({"w": jnp.ones(2)}, state)

    state = tx.init({"w": jnp.zeros(2)})
    moved = []
    for _ in range(5):
        u, state = step(state)
        moved.append(float(u["w"][0]))
    assert moved == [0.0, 0.0, -1.0, -1.0, -1.0]


def test_has_updated_finds_the_accumulate_state_and_refuses_ambiguity():
    params = {"w": jnp.zeros(2)}
    inner = accumulate(optix.adam(1e-3), 2)
    nested = optix.skip_nonfinite(optix.chain(optix.clip(1.0), inner))
    state = nested.init(params)
    for expected in (False, True):
        _, state = nested.update({"w": jnp.ones(2)}, state)
        assert bool(optix.accumulate_has_updated(state)) is expected
    assert bool(jax.jit(optix.accumulate_has_updated)(state))
    with pytest.raises(ValueError, match="found 0"):
        optix.accumulate_has_updated(optix.adam(1e-3).init(params))
    both = optix.chain(inner, inner).init(params)
    with pytest.raises(ValueError, match="found 2: 0, 1"):
        optix.accumulate_has_updated(both)
    assert not bool(optix.accumulate_has_updated(both[1]))


@pytest.mark.parametrize(
    "schedule", [lambda n: 0 * n, lambda n: jnp.full([], 1.5), lambda n: jnp.ones(2)]
)
def test_bad_every_k_schedule_is_rejected(schedule):
    with pytest.raises(ValueError, match="every_k"):
        accumulate(optix.sgd(0.1), schedule)
