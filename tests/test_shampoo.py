"""Shampoo: the first step, momentum and decay, float32 damping, shape errors.

The step-by-step comparisons with a NumPy transcription of the paper's algorithm are in
``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def test_shampoo_first_step_of_a_matrix_is_its_orthogonal_factor(x64):
    """With one gradient and eps -> 0, (G G^T)^{-1/4} G (G^T G)^{-1/4} = U V^T."""
    g = np.random.default_rng(5).standard_normal((4, 3))
    tx = optix.scale_by_shampoo(eps=1e-12)
    u, _ = jax.jit(tx.update)({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))
    uu, _, vt = np.linalg.svd(g, full_matrices=False)
    np.testing.assert_allclose(u["w"], uu @ vt, atol=1e-5)


def test_shampoo_momentum_and_decay_follow_the_preconditioner():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = jax.tree.map(lambda x: 0.3 * x, params)
    ours = optix.shampoo(0.1, momentum=0.9, weight_decay=0.01)
    ref = optix.chain(
        optix.scale_by_shampoo(),
        optix.scale_by_momentum(0.9),
        optix.add_decayed_weights(0.01),
        optix.scale_lr(0.1),
    )
    s1, s2 = ours.init(params), ref.init(params)
    step1, step2 = jax.jit(ours.update), jax.jit(ref.update)
    for _ in range(3):
        u1, s1 = step1(grads, s1, params)
        u2, s2 = step2(grads, s2, params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_shampoo_float32_damping_keeps_rank_deficient_statistics_finite():
    """A (2, 64) gradient makes R (64 x 64) of rank <= 2: float32 eigh returns round-off
    eigenvalues of either sign; they are floored before eps is added, so the step stays finite
    and bounded even with eps = 0."""
    rng = np.random.default_rng(0)
    tx = optix.scale_by_shampoo(eps=0.0, precondition_frequency=2)
    params = {"w": jnp.zeros((2, 64), jnp.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(4):
        g = {"w": jnp.asarray(100 * rng.standard_normal((2, 64)), jnp.float32)}
        u, state = update(g, state)
        assert bool(jnp.all(jnp.isfinite(u["w"])))


def test_shampoo_names_a_gradient_of_another_shape():
    tx = optix.scale_by_shampoo(block_size=2)
    state = tx.init({"w": jnp.ones((4, 3)), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match="'w' has shape \\(3, 4\\)"):
        tx.update({"w": jnp.ones((3, 4)), "b": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match="'b'"):
        tx.update({"w": jnp.ones((4, 3)), "b": jnp.ones(4)}, state)
