"""SOAP: weight decay and the eigenbasis refresh.

The step-by-step comparisons with a NumPy transcription of the paper's algorithm are in
``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import optix


def test_soap_weight_decay_uses_the_params_before_the_step():
    """optix decays ``W_{t-1}`` (as AdamW does); the authors' code decays the already-updated
    params, a difference of ``lr^2 * lambda`` times the step."""
    params = {"w": jnp.ones((2, 2))}
    g = {"w": jnp.array([[1.0, 2.0], [0.5, -1.0]])}
    with_decay, without = optix.soap(0.1, weight_decay=0.5), optix.soap(0.1, weight_decay=0.0)
    s1, s2 = with_decay.init(params), without.init(params)
    step1, step2 = jax.jit(with_decay.update), jax.jit(without.update)
    for _ in range(2):
        u1, s1 = step1(g, s1, params)
        u2, s2 = step2(g, s2, params)
    np.testing.assert_allclose(u1["w"] - u2["w"], -0.1 * 0.5 * params["w"], rtol=1e-6)


def test_soap_refresh_keeps_an_eigenbasis():
    """After refreshes, Q_L^T L Q_L is nearly diagonal (power iteration tracks the eigenbasis)."""
    rng = np.random.default_rng(0)
    tx = optix.scale_by_soap(precondition_frequency=2, b2=0.99)
    params = {"w": jnp.zeros((4, 3), jnp.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    mix = rng.standard_normal((4, 4))
    for _ in range(60):
        g = mix @ rng.standard_normal((4, 3))
        _, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
    leaf = state.leaves["w"]
    q, stat = np.asarray(leaf.left_basis[0][0]), np.asarray(leaf.left[0][0])  # group 0, block 0
    rotated = q.T @ stat @ q
    off = rotated - np.diag(np.diag(rotated))
    assert np.abs(off).max() < 0.05 * np.abs(rotated).max()
    assert np.all(np.diff(np.diag(rotated)) <= 1e-3 * np.abs(rotated).max())  # decreasing
