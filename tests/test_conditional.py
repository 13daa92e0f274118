"""conditionally_transform and conditionally_mask: the inner transform runs only where the
condition holds, its state is untouched elsewhere, and the counter counts every call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def _grads(seed):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=3), jnp.float32), "b": jnp.float32(rng.normal())}


@pytest.mark.parametrize("wrapper", [optix.conditionally_transform, optix.conditionally_mask])
def test_inner_runs_exactly_at_the_chosen_steps(wrapper):
    inner = optix.adam(1e-2)
    tx = wrapper(inner, lambda step: step % 3 == 1)
    params = _grads(0)
    state, inner_state = tx.init(params), inner.init(params)
    update = jax.jit(tx.update)
    for t in range(7):
        g = _grads(t + 1)
        u, state = update(g, state, params)
        assert int(state.step) == t + 1
        if t % 3 == 1:
            want, inner_state = inner.update(g, inner_state, params)
        else:
            want = (
                g if wrapper is optix.conditionally_transform else jax.tree.map(jnp.zeros_like, g)
            )
        for k in g:
            np.testing.assert_allclose(u[k], want[k], rtol=1e-6, err_msg=f"step {t} {k}")
            assert u[k].dtype == g[k].dtype
        for a, b in zip(
            jax.tree.leaves(state.inner_state), jax.tree.leaves(inner_state), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_extra_arguments_reach_the_condition_only_when_forwarded():
    seen = []

    def condition(step, value=None):
        seen.append(value)
        return value > 0

    tx = optix.conditionally_mask(optix.sgd(1.0), condition, forward_extra_args=True)
    g = {"w": jnp.ones(2)}
    state = tx.init(g)
    u, state = tx.update(g, state, value=jnp.float32(-1.0))
    np.testing.assert_array_equal(u["w"], [0.0, 0.0])
    u, state = tx.update(g, state, value=jnp.float32(1.0))
    np.testing.assert_array_equal(u["w"], [-1.0, -1.0])
    plain = optix.conditionally_mask(optix.sgd(1.0), lambda step: step >= 0)
    plain.update(g, plain.init(g), value=jnp.float32(1.0))  # not forwarded: no TypeError


def test_hyperparameters_of_the_inner_transform_stay_reachable():
    tx = optix.conditionally_transform(optix.adam(1e-2), lambda step: step % 2 == 0)
    state = tx.init({"w": jnp.zeros(2)})
    state = optix.set_hyperparams(state, learning_rate=1e-3)
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(1e-3)


def test_bad_condition_is_a_clear_error():
    with pytest.raises(TypeError, match="should_transform_fn"):
        optix.conditionally_mask(optix.sgd(0.1), 3)
    with pytest.raises(TypeError, match="inner"):
        optix.conditionally_transform(optix.sgd, lambda step: True)
    tx = optix.conditionally_mask(optix.sgd(0.1), lambda step: jnp.ones(2, bool))
    with pytest.raises(ValueError, match="scalar bool"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_state_is_a_scan_carry_and_a_cond_branch():
    tx = optix.conditionally_mask(optix.adamw(1e-2), lambda step: step % 2 == 0)
    params = _grads(0)
    state = tx.init(params)

    def body(s, g):
        return tx.update(g, s, params)[1], None

    grads = jax.tree.map(lambda x: jnp.stack([x, -x, x]), _grads(1))
    scanned, _ = jax.jit(lambda s: jax.lax.scan(body, s, grads))(state)
    assert jax.tree.structure(scanned) == jax.tree.structure(state)
    assert int(scanned.step) == 3
