"""SM3: scalar leaves, schedules, dtypes and empty leaves.

The step-by-step comparisons (a NumPy transcription of SM3-II on every leaf, and optax on the
leaves it runs on) are in ``tests/references.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix


def test_optax_sm3_fails_on_scalar_leaves_optix_does_not(x64):
    """Why the full tree is checked against the transcription: optax 0.2.8 keeps no accumulator
    for a rank-0 leaf and then indexes it (``v[0]`` on an empty list)."""
    params = {"s": jnp.asarray(1.0)}
    tx = optax.sm3(0.1)
    with pytest.raises(IndexError), jax.numpy_dtype_promotion("standard"):
        tx.update(params, tx.init(params), params)
    ours = optix.sm3(0.1, 0.0)
    u, state = ours.update({"s": jnp.asarray(2.0)}, ours.init(params))
    assert float(u["s"]) == pytest.approx(-0.1 * 2.0 / math.sqrt(4.0 + 1e-8), rel=1e-14)
    assert [a.shape for a in state[0].nu["s"]] == [()]


def test_sm3_schedule_and_dtypes():
    """A learning-rate schedule works (optax's sm3 takes a constant only); memory is per axis."""
    tx = optix.sm3(optix.schedules.cosine_decay(0.1, 10))
    params = {"w": jnp.ones((4, 5), jnp.bfloat16), "z": jnp.ones(3, jnp.complex64)}
    state = tx.init(params)
    assert [a.shape for a in state[0].nu["w"]] == [(4,), (5,)]
    assert state[0].nu["z"][0].dtype == jnp.float32
    grads = {"w": jnp.ones((4, 5), jnp.bfloat16), "z": jnp.full(3, 1j, jnp.complex64)}
    u, _ = jax.jit(tx.update)(grads, state)
    assert u["w"].dtype == jnp.bfloat16 and u["z"].dtype == jnp.complex64
    # first step, momentum 0.9: -lr * 0.1 * g / |g|
    np.testing.assert_allclose(np.asarray(u["z"]), -0.1 * 0.1 * 1j, rtol=1e-6)


def test_sm3_accumulators_of_low_precision_params_default_to_float32():
    """bf16 params get float32 accumulators and momentum unless a dtype is asked for; an integer
    or bool dtype is refused, naming the argument."""
    params = {"w": jnp.ones((4, 5), jnp.bfloat16), "s": jnp.ones((), jnp.bfloat16)}
    state = optix.sm3(0.1).init(params)[0]
    assert {a.dtype for a in jax.tree.leaves(state.nu)} == {jnp.dtype(jnp.float32)}
    assert {m.dtype for m in jax.tree.leaves(state.mu)} == {jnp.dtype(jnp.float32)}
    asked = optix.sm3(0.1, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16).init(params)[0]
    assert {a.dtype for a in jax.tree.leaves((asked.nu, asked.mu))} == {jnp.dtype(jnp.bfloat16)}
    grads = jax.tree.map(jnp.ones_like, params)
    u, _ = jax.jit(optix.sm3(0.1).update)(grads, optix.sm3(0.1).init(params))
    assert {x.dtype for x in jax.tree.leaves(u)} == {jnp.dtype(jnp.bfloat16)}
    for name in ("mu_dtype", "nu_dtype"):
        for bad in (jnp.int32, jnp.bool_):
            with pytest.raises(TypeError, match=name):
                optix.sm3(0.1, **{name: bad})


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (2, 0, 3), (0,)])
def test_sm3_leaves_with_no_elements(shape):
    """A leaf with an axis of length 0 gets a zero-size update; its accumulators of the other
    axes stay 0 (the maximum over an empty slice), and the other leaves are unaffected."""
    params = {"e": jnp.ones(shape), "w": jnp.ones((2, 3))}
    tx = optix.sm3(0.1)
    state = tx.init(params)
    grads = {"e": jnp.ones(shape), "w": jnp.full((2, 3), 2.0)}
    u, new = jax.jit(tx.update)(grads, state)
    assert u["e"].shape == shape and u["e"].dtype == jnp.float32
    assert all(float(jnp.sum(jnp.abs(a))) == 0.0 for a in new[0].nu["e"])
    alone = tx.update({"w": grads["w"]}, tx.init({"w": params["w"]}))[0]
    np.testing.assert_array_equal(u["w"], alone["w"])
    assert jax.tree.structure(new) == jax.tree.structure(state)
