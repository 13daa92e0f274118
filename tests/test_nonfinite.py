"""NaN safety: a skipped step must leave no trace. The reference is the unwrapped optimizer run on
the same gradients with the bad step simply left out, and the comparison is bitwise."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix.wrappers._nonfinite import SkipNonfiniteState
from optix.wrappers._nonfinite import all_finite
from optix.wrappers._nonfinite import skip_nonfinite
from tests.cases import CASES
from tests.cases import IDS
from tests.test_contract import _params

N_STEPS, BAD = 10, 3


def _grad_sequence(params, n, seed=2):
    rng = np.random.default_rng(seed)
    return [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        for _ in range(n)
    ]


def _poison(grads, value, leaf="vector"):
    """``grads`` with one element of one leaf replaced by ``value``."""
    out = dict(grads)
    out[leaf] = grads[leaf].at[2].set(value)
    return out


def _signature(tree):
    return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


def _run_pair(make, poisoned, needs_params=True):
    """Run ``skip_nonfinite(make())`` on ``poisoned`` and ``make()`` on the same gradients without
    the bad step; return both (params, state) results. chex checks the wrapped run's jitted update
    is traced once: the skip is a branch inside one compiled step, not a recompilation."""
    wrapped, plain = skip_nonfinite(make()), make()
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def wrapped_update(p, s, g):
        return wrapped.update(g, s, p)

    plain_update = jax.jit(lambda p, s, g: plain.update(g, s, p))

    # apply_updates runs outside the jitted update in both runs: inside one jit, XLA may contract
    # the last multiply of the update and the param add into one FMA in the plain run but not
    # across the wrapper's lax.cond, which changes the last bit of the params (not the optimizer).
    def wrapped_step(p, s, g):
        u, s = wrapped_update(p, s, g)
        return optix.apply_updates(p, u), s

    def plain_step(p, s, g):
        u, s = plain_update(p, s, g)
        return optix.apply_updates(p, u), s

    params = _params()
    p, s = params, wrapped.init(params)
    p_ref, s_ref = params, plain.init(params)
    for t, g in enumerate(poisoned):
        p, s = wrapped_step(p, s, g)
        if t != BAD:
            p_ref, s_ref = plain_step(p_ref, s_ref, g)
    return (p, s), (p_ref, s_ref)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_step_in_adam_run_is_bitwise_a_skipped_step(bad_value):
    grads = _grad_sequence(_params(), N_STEPS)
    grads[BAD] = _poison(grads[BAD], bad_value)
    (p, s), (p_ref, s_ref) = _run_pair(lambda: optix.adam(1e-2), grads)
    chex.assert_trees_all_equal(p, p_ref)
    chex.assert_trees_all_equal(s.inner_state, s_ref)
    assert int(s.skipped) == 1 and int(s.consecutive) == 0
    assert s.skipped.dtype == jnp.int32 and s.consecutive.dtype == jnp.int32


def test_nan_in_one_leaf_of_a_multi_leaf_tree_skips_the_whole_step():
    grads = _grad_sequence(_params(), N_STEPS)
    # only the nested matrix leaf is bad; every other leaf of that step is finite
    bad = dict(grads[BAD])
    bad["layer"] = [grads[BAD]["layer"][0].at[1, 2].set(jnp.nan)]
    grads[BAD] = bad
    (p, s), (p_ref, s_ref) = _run_pair(lambda: optix.adam(1e-2), grads)
    chex.assert_trees_all_equal(p, p_ref)
    chex.assert_trees_all_equal(s.inner_state, s_ref)
    assert int(s.skipped) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_optimizer_skips_bitwise_under_jit_without_recompiling(case):
    grads = _grad_sequence(_params(), 6)
    grads[BAD] = _poison(grads[BAD], jnp.nan)
    (p, s), (p_ref, s_ref) = _run_pair(case.make, grads)
    chex.assert_trees_all_equal(p, p_ref)
    chex.assert_trees_all_equal(s.inner_state, s_ref)
    assert int(s.skipped) == 1 and int(s.consecutive) == 0
    tx = skip_nonfinite(case.make())
    assert _signature(s) == _signature(tx.init(_params()))
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params())
    assert _signature(jax.eval_shape(tx.init, shapes)) == _signature(s)


def test_give_up_after_max_consecutive_lets_nonfinite_steps_through():
    tx = skip_nonfinite(optix.sgd(0.1), max_consecutive=2)
    step = jax.jit(lambda g, s: tx.update({"w": g}, s))
    state = tx.init({"w": jnp.zeros(2)})
    nan, ok = jnp.array([1.0, jnp.nan]), jnp.array([1.0, 2.0])
    # (gradient, expected skipped, expected consecutive, whether the step reached sgd)
    script = [
        (nan, 1, 1, False),
        (nan, 2, 2, False),
        (nan, 2, 2, True),  # gave up: the third NaN goes through, counts stop growing
        (nan, 2, 2, True),
        (ok, 2, 0, True),  # a finite step resets `consecutive`: protection is back
        (nan, 3, 1, False),
    ]
    for g, skipped, consecutive, through in script:
        u, state = step(g, state)
        assert (int(state.skipped), int(state.consecutive)) == (skipped, consecutive)
        expected = -0.1 * np.asarray(g) if through else np.zeros(2)
        np.testing.assert_allclose(u["w"], expected, rtol=1e-6)


def test_after_giving_up_the_inner_state_sees_the_nan():
    tx = skip_nonfinite(optix.adam(1e-2), max_consecutive=2)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    for _ in range(2):
        _, state = tx.update({"w": jnp.array([jnp.nan, 1.0])}, state, params)
        assert np.all(np.isfinite(state.inner_state[0].mu["w"]))
    _, state = tx.update({"w": jnp.array([jnp.nan, 1.0])}, state, params)
    assert np.isnan(state.inner_state[0].mu["w"][0])
    assert (int(state.skipped), int(state.consecutive)) == (2, 2)


def test_complex_leaves_and_empty_trees():
    assert bool(all_finite({}))
    assert not bool(all_finite(jnp.array([1 + 1j, complex(0, np.nan)], jnp.complex64)))
    assert not bool(all_finite(jnp.array([1 + 1j, complex(np.inf, 0)], jnp.complex64)))
    tx = skip_nonfinite(optix.sgd(0.5))
    state = tx.init(jnp.zeros(2, jnp.complex64))
    u, state = tx.update(jnp.array([1j, complex(0, np.nan)], jnp.complex64), state)
    np.testing.assert_array_equal(u, 0)
    assert u.dtype == jnp.complex64 and int(state.skipped) == 1


def test_bf16_gradients_keep_their_dtype_when_skipped():
    tx = skip_nonfinite(optix.adam(1e-2))
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = tx.init(params)
    u, state = tx.update({"w": jnp.array([1.0, np.inf, 0.0], jnp.bfloat16)}, state, params)
    assert u["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(u["w"], np.float32), 0)


def test_state_is_a_scan_carry_and_extra_arguments_are_forwarded():
    def init(params):
        return optix.EmptyState()

    def update(updates, state, params=None, *, value=1.0, **extra):
        return jax.tree.map(lambda u: u * value, updates), state

    tx = skip_nonfinite(optix.GradientTransformation(init, update))
    state = tx.init(jnp.zeros(2))
    assert isinstance(state, SkipNonfiniteState)

    def body(s, x):
        g, v = x
        u, s = tx.update(g, s, value=v)
        return s, u

    gs = jnp.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 4.0]])
    state, us = jax.lax.scan(body, state, (gs, jnp.array([2.0, 5.0, 10.0])))
    np.testing.assert_array_equal(us, [[2.0, 4.0], [0.0, 0.0], [30.0, 40.0]])
    assert int(state.skipped) == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_max_consecutive_below_one_is_rejected(bad):
    with pytest.raises(ValueError, match="max_consecutive"):
        skip_nonfinite(optix.sgd(0.1), max_consecutive=bad)


@pytest.mark.parametrize("bad", [1.5, True, "3"])
def test_max_consecutive_must_be_an_int(bad):
    with pytest.raises(TypeError, match="max_consecutive"):
        skip_nonfinite(optix.sgd(0.1), max_consecutive=bad)


def test_inner_must_be_a_transform():
    with pytest.raises(TypeError, match="inner"):
        skip_nonfinite(optix.adam)


def test_none_leaves_and_vmap_over_params():
    tx = skip_nonfinite(optix.sgd(0.1))
    params = {"a": jnp.ones((2, 2)), "frozen": None}
    grads = {"a": jnp.array([[1.0, np.nan], [1.0, 2.0]]), "frozen": None}
    state = jax.vmap(tx.init)(params)
    u, state = jax.vmap(lambda g, s: tx.update(g, s))(grads, state)
    assert u["frozen"] is None
    np.testing.assert_allclose(u["a"], [[0.0, 0.0], [-0.1, -0.2]], rtol=1e-6)
    np.testing.assert_array_equal(state.skipped, [1, 0])
