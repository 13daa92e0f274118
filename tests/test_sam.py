"""Sharpness-aware minimisation against optax.contrib.sam and the paper's update.

Teacher-forced float64 comparisons (entries of ``tests/references.py``, run by
``tests/reference.py``: 120 steps, scalar/vector/matrix pytree, an all-zero gradient at step 11) at
its default tolerance (``rtol=1e-10``). SAM's non-opaque update is a deterministic function of
(gradient, params, state), so teacher forcing compares the same function on both sides. optax's
``contrib.normalize`` divides by the gradient norm without a guard, so an all-zero gradient gives
NaN, which optax's arithmetic select (``c * a + (1 - c) * b``) then spreads even into the outer
step; the optax side here uses the same normalisation with optix's guard (zero for a zero
gradient), and a separate test shows the difference. Deliberate difference: with ``sync_period=1``
optix is the outer optimizer, where optax steps from the previous call's cached params.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix


def _loss(w):
    return jnp.sum(jnp.cos(3 * w) + 0.5 * w**4)


def test_one_cycle_is_the_papers_step(x64):
    """Two calls: ``w <- w - lr * grad f(w + rho * grad f(w) / ||grad f(w)||)`` (Foret et al.,
    eq. 2 and Algorithm 1, one ascent step and one descent step)."""
    lr, rho = 0.1, 0.3
    w = jnp.array([0.3, -1.2, 0.7])
    g = jax.grad(_loss)(w)
    expected = w - lr * jax.grad(_loss)(w + rho * g / jnp.linalg.norm(g))
    tx = optix.sam(optix.sgd(lr), rho=rho)
    state, params = tx.init(w), w
    for _ in range(2):
        updates, state = tx.update(jax.grad(_loss)(params), state, params)
        params = optix.apply_updates(params, updates)
    np.testing.assert_allclose(params, expected, rtol=1e-13)


def test_opaque_mode_matches_optax_and_the_transparent_cycles(x64):
    outer, rho, period = optix.adam(0.05), 0.1, 3
    opaque = optix.sam(outer, optix.identity(), rho=rho, sync_period=period, opaque=True)
    transparent = optix.sam(outer, optix.identity(), rho=rho, sync_period=period)
    theirs = optax.contrib.sam(
        optax.adam(0.05), optax.sgd(rho), sync_period=period, opaque_mode=True
    )
    grad_fn = lambda p, i: jax.grad(_loss)(p)  # noqa: E731
    w = jnp.array([0.3, -1.2, 0.7])
    p_o, p_t, p_x = w, w, w
    s_o, s_t, s_x = opaque.init(w), transparent.init(w), theirs.init(w)
    for _ in range(4):
        u, s_o = opaque.update(jax.grad(_loss)(p_o), s_o, p_o, grad_fn=grad_fn)
        p_o = optix.apply_updates(p_o, u)
        with jax.numpy_dtype_promotion("standard"):
            u, s_x = theirs.update(jax.grad(_loss)(p_x), s_x, p_x, grad_fn=grad_fn)
        p_x = optax.apply_updates(p_x, u)
        for _ in range(period):
            u, s_t = transparent.update(jax.grad(_loss)(p_t), s_t, p_t)
            p_t = optix.apply_updates(p_t, u)
        np.testing.assert_allclose(p_o, p_x, rtol=1e-13)
        np.testing.assert_allclose(p_o, p_t, rtol=1e-12)
    assert s_o.cache is None


def test_sync_period_one_is_the_outer_optimizer_where_optax_undoes_steps(x64):
    w = jnp.array([0.3, -1.2, 0.7])
    ours = optix.sam(optix.sgd(0.1), rho=0.05, sync_period=1)
    plain = optix.sgd(0.1)
    theirs = optax.contrib.sam(optax.sgd(0.1), optax.sgd(0.05), sync_period=1)
    p_s, p_p, p_x = w, w, w
    s_s, s_p, s_x = ours.init(w), plain.init(w), theirs.init(w)
    for _ in range(3):
        u, s_s = ours.update(jax.grad(_loss)(p_s), s_s, p_s)
        p_s = optix.apply_updates(p_s, u)
        u, s_p = plain.update(jax.grad(_loss)(p_p), s_p, p_p)
        p_p = optix.apply_updates(p_p, u)
        with jax.numpy_dtype_promotion("standard"):
            u, s_x = theirs.update(jax.grad(_loss)(p_x), s_x, p_x)
        p_x = optax.apply_updates(p_x, u)
    np.testing.assert_allclose(p_s, p_p, rtol=1e-14)
    assert not np.allclose(p_x, p_p)


def test_zero_gradient_ascent_is_zero_where_optax_normalize_is_nan():
    params = {"w": jnp.ones(3)}
    zero = {"w": jnp.zeros(3)}
    updates, _ = optix.sam(optix.sgd(0.1)).update(
        zero, optix.sam(optix.sgd(0.1)).init(params), params
    )
    np.testing.assert_array_equal(updates["w"], np.zeros(3))
    with jax.numpy_dtype_promotion("standard"):
        nan, _ = optax.contrib.normalize().update(zero, optax.EmptyState())
    assert np.all(np.isnan(nan["w"]))


def test_rho_is_a_settable_hyperparameter():
    params = jnp.array([1.0, -2.0])
    g = jnp.array([3.0, 4.0])
    tx = optix.sam(optix.sgd(0.1), rho=0.05)
    state = optix.set_hyperparams(tx.init(params), rho=0.5)
    updates, _ = jax.jit(tx.update)(g, state, params)
    np.testing.assert_allclose(updates, 0.5 * g / 5.0, rtol=1e-6)
    with pytest.raises(ValueError, match="rho"):
        optix.set_hyperparams(state, rho=-1.0)


def test_arguments_are_checked():
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match="rho"):
        optix.sam(optix.sgd(0.1), rho=-0.1)
    with pytest.raises(ValueError, match="sync_period"):
        optix.sam(optix.sgd(0.1), sync_period=0)
    with pytest.raises(TypeError, match="gradient transformation"):
        optix.sam(optix.sgd)
    with pytest.raises(TypeError, match="opaque"):
        optix.sam(optix.sgd(0.1), opaque=1)
    opaque = optix.sam(optix.sgd(0.1), opaque=True)
    with pytest.raises(ValueError, match="grad_fn"):
        opaque.update(jnp.ones(2), opaque.init(params), params)
    tx = optix.sam(optix.sgd(0.1))
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(jnp.ones(2), tx.init(params))
