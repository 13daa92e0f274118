"""Gradient noise (``add_noise``): float32 draws for bf16 leaves, reproducible from the seed,
independent across seeds, leaves and steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import optix


def test_add_noise_bf16_leaf_draws_float32_noise():
    """A bf16 leaf gets the float32 noise of its key, added in float32 and rounded once."""
    eta, gamma, seed = 0.5, 0.55, 3
    tx = optix.add_noise(eta, gamma, seed)
    g = jnp.ones((64,), jnp.bfloat16)
    state = tx.init(g)
    update = jax.jit(tx.update)
    key = jax.random.PRNGKey(seed)
    for t in range(3):
        out, state = update(g, state)
        assert out.dtype == jnp.bfloat16
        n = jax.random.normal(optix.noise_key(key, t, 0), (64,), jnp.float32)
        want = np.asarray(1.0 + np.float32(math.sqrt(eta / (1 + t) ** gamma)) * np.asarray(n))
        np.testing.assert_allclose(
            np.asarray(out).astype(np.float32),
            want.astype(jnp.bfloat16).astype(np.float32),
            rtol=2**-7,
        )


def _noise_two_leaves(seed, steps: int = 3) -> list[list[np.ndarray]]:
    tx = optix.add_noise(0.1, 0.55, seed)
    zero = [jnp.zeros((2000,), jnp.float32), jnp.zeros((2000,), jnp.float32)]
    state = tx.init(zero)
    out = []
    for _ in range(steps):
        u, state = tx.update(zero, state)
        out.append([np.asarray(x) for x in u])
    return out


def test_noise_reproducible_from_seed():
    a, b = _noise_two_leaves(17), _noise_two_leaves(17)
    for step_a, step_b in zip(a, b, strict=True):
        for x, y in zip(step_a, step_b, strict=True):
            np.testing.assert_array_equal(x, y)
    # An int seed, its raw PRNGKey and its typed key are the same seed.
    for same in (jax.random.PRNGKey(17), jax.random.key(17)):
        for step_a, step_c in zip(a, _noise_two_leaves(same), strict=True):
            for x, y in zip(step_a, step_c, strict=True):
                np.testing.assert_array_equal(x, y)


def test_noise_differs_across_seeds_leaves_and_steps():
    a, c = _noise_two_leaves(17), _noise_two_leaves(18)
    bound = 5 / math.sqrt(2000)  # |correlation| of independent normal samples, five sigma
    for t in range(3):
        for leaf in range(2):
            assert not np.array_equal(a[t][leaf], c[t][leaf])
            assert abs(np.corrcoef(a[t][leaf], c[t][leaf])[0, 1]) < bound
        assert abs(np.corrcoef(a[t][0], a[t][1])[0, 1]) < bound  # leaves of one step
    assert abs(np.corrcoef(a[0][0], a[1][0])[0, 1]) < bound  # one leaf, two steps
