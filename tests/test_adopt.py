"""ADOPT: the first step, and complex parameters.

The step-by-step comparisons with ``optax.contrib.adopt`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def test_adopt_first_step_only_initialises_the_second_moment(x64):
    tx = optix.scale_by_adopt()
    g = {"w": jnp.array([3.0, -0.5, 0.0])}
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u["w"], 0.0)
    np.testing.assert_array_equal(state.mu["w"], 0.0)
    np.testing.assert_array_equal(state.nu["w"], g["w"] ** 2)
    # second step: g / max(|g_0|, eps), clipped at 1^(1/4) = 1, times (1 - b1)
    u, _ = tx.update({"w": jnp.array([1.5, -2.0, 1.0])}, state)
    np.testing.assert_allclose(u["w"], 0.1 * np.array([0.5, -1.0, 1.0]), rtol=1e-15)


def test_adopt_complex_needs_clipping_off():
    params = {"w": jnp.ones(3, jnp.complex64)}
    with pytest.raises(TypeError, match="complex"):
        optix.adopt(1e-3).init(params)
    tx = optix.adopt(1e-3, clip_value=None)
    grads = {"w": jnp.array([1 + 1j, 2j, -1.0], jnp.complex64)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(3):
        u, state = update(grads, state)
    assert u["w"].dtype == jnp.complex64 and bool(jnp.all(jnp.isfinite(u["w"])))
    assert state[0].nu["w"].dtype == jnp.float32  # chain state: (scale_by_adopt, scale_lr)
