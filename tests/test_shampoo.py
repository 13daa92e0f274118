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


def test_eigenvalue_correction_scales_each_eigen_direction_by_its_own_second_moment(x64):
    """Gradients 10 e1 e1^T, 5 e2 e2^T and a rare small 0.1 e1 e2^T, in turn, k = 4 times each:
    L and R stay diagonal with a fixed order of eigenvalues, so the bases are fixed. Root
    Shampoo scales the small entry by ``(L_11 R_22)^{-1/4}`` (the factors' eigenvalues, set by
    the large entries); the eigenvalue-corrected one by its own second moment ``D_12 = k 0.01``:
    its update on that entry is ``0.1 / sqrt(k 0.01) = 1 / sqrt(k)``, some 70 times larger."""
    e1, e2 = np.eye(2)
    stream = [10 * np.outer(e1, e1), 5 * np.outer(e2, e2), 0.1 * np.outer(e1, e2)] * 4

    def last_update(preconditioner):
        tx = optix.shampoo(1.0, eps=1e-12, preconditioner=preconditioner)
        params = {"w": jnp.zeros((2, 2))}
        state = tx.init(params)
        for g in stream:
            u, state = tx.update({"w": jnp.asarray(g)}, state, params)
        return -np.asarray(u["w"])

    corrected, root = last_update("eigenvalue_corrected"), last_update("root")
    np.testing.assert_allclose(corrected, np.outer(e1, e2) / np.sqrt(4), atol=1e-9)
    l11, r22 = 4 * (100 + 0.01), 4 * (25 + 0.01)
    np.testing.assert_allclose(root, 0.1 * np.outer(e1, e2) / (l11 * r22) ** 0.25, atol=1e-9)


def test_eigenvalue_corrected_first_step_is_the_orthogonal_factor(x64):
    """One gradient ``G = U S V^T``: ``X = Q_L^T G Q_R`` is ``S`` (up to signs), and Adam's first
    step in that basis is ``sign(X)``, so ``u = U V^T``, as for root Shampoo."""
    g = np.random.default_rng(5).standard_normal((4, 4))
    tx = optix.scale_by_eigenvalue_corrected_shampoo(eps=1e-9, stat_decay=0.9)
    u, _ = jax.jit(tx.update)({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))
    uu, _, vt = np.linalg.svd(g)
    np.testing.assert_allclose(u["w"], uu @ vt, atol=1e-6)


@pytest.mark.parametrize("preconditioner", ["root", "eigenvalue_corrected"])
def test_sgd_and_rmsprop_grafting_set_each_matrix_norm(preconditioner, x64):
    """SGD grafting: each leaf's step, each matrix of a stack on its own, has the norm of its
    gradient. RMSprop grafting (no bias correction): on step 1, ``g / sqrt((1 - b2) g^2)`` has
    norm ``sqrt(size / (1 - b2))``."""
    rng = np.random.default_rng(6)
    grads = {"w": jnp.asarray(rng.standard_normal((3, 5, 4))), "b": jnp.asarray([3.0, 4.0])}
    spec = {"w": optix.MatrixSpec(batch_axes=(0,))}
    kw = {"preconditioner": preconditioner, "matrix_spec": spec, "eps": 1e-3}
    for graft, norms in [
        ("sgd", {"w": np.linalg.norm(grads["w"], axis=(1, 2)), "b": 5.0}),
        ("rmsprop", {"w": np.full(3, np.sqrt(20 / 0.01)), "b": np.sqrt(2 / 0.01)}),
    ]:
        tx = optix.shampoo(1.0, graft=graft, graft_b2=0.99, graft_eps=0.0, **kw)
        u, _ = tx.update(grads, tx.init(grads), grads)
        np.testing.assert_allclose(np.linalg.norm(u["w"], axis=(1, 2)), norms["w"], rtol=1e-10)
        np.testing.assert_allclose(np.linalg.norm(u["b"]), norms["b"], rtol=1e-10)
    with pytest.raises(ValueError, match="preconditioner"):
        optix.shampoo(0.1, preconditioner="inverse")
