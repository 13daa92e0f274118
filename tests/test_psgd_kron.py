"""PSGD Kron: factor layouts, the update schedule, probes, whitening, and what it refuses.

The step-by-step check is an entry of the reference registry (``tests/references.py``,
``numpy:psgd_kron-*``): a NumPy transcription of psgd_jax's ``kron`` fed the same probe vectors,
teacher-forced in float64 over 120 steps at ``rtol = 1e-8`` (the transcription inverts the
triangular factors with LAPACK's general inverse where optix solves triangular systems; observed:
at most 2.1e-14 of the leaf's largest update over the three entries). A wrong probe seed, a different preconditioner learning rate
or another update interval fails it from the first steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def test_factor_layouts():
    params = {
        "w": jnp.zeros((4, 3)),
        "b": jnp.zeros(3),
        "s": jnp.zeros(()),
        "row": jnp.zeros((1, 5)),
    }
    state = optix.scale_by_psgd_kron(max_size_triangular=3).init(params)
    shapes = {k: [q.shape for q in v.factors] for k, v in state.leaves.items()}
    # an axis above max_size_triangular, of size 1, or of a 1-D leaf: diagonal
    assert shapes == {"w": [(4,), (3, 3)], "b": [(3,)], "s": [()], "row": [(1,), (5,)]}
    tri = state.leaves["w"].factors[1]
    np.testing.assert_allclose(tri, np.sqrt(1.0) * np.eye(3))
    scaled = optix.scale_by_psgd_kron(init_scale=4.0).init(params)
    np.testing.assert_allclose(scaled.leaves["w"].factors[0], 2.0 * np.eye(4))  # 4 ** (1/2)


def test_factors_stay_upper_triangular_and_change_only_on_update_steps():
    tx = optix.scale_by_psgd_kron(precond_update_every=3)
    params = {"w": jnp.zeros((4, 3))}
    state = tx.init(params)
    update = jax.jit(tx.update)
    rng = np.random.default_rng(0)
    for t in range(1, 8):
        before = state.leaves["w"].factors
        g = {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)}
        _, state = update(g, state)
        after = state.leaves["w"].factors
        changed = not all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        assert changed == ((t - 1) % 3 == 0), t
        for q in after:
            np.testing.assert_array_equal(np.tril(q, -1), 0.0)


def test_the_seed_decides_the_probes():
    params = {"w": jnp.zeros((3, 3))}
    g = {"w": jnp.arange(9.0).reshape(3, 3) / 9}

    def step(seed):
        tx = optix.psgd_kron(0.1, seed=seed)
        return tx.update(g, tx.init(params), params)[0]["w"]

    np.testing.assert_array_equal(step(0), step(0))
    np.testing.assert_array_equal(step(jax.random.PRNGKey(0)), step(0))
    assert not np.allclose(step(0), step(1))


def test_the_fitted_preconditioner_whitens_the_gradient():
    """PSGD's criterion: at its fixed point ``E[(P g)(P g)^T] = I`` (with ``v ~ N(0, I)``). With
    gradients whose entries' second moments span 2.5e-3 .. 900, the preconditioned gradient's
    end up near 1 on every entry. (A spread of 1e8 takes PSGD far longer: a factor's step is
    normalised by its largest direction, so the small ones move slowly.)"""
    rows = jnp.asarray([0.1, 1.0, 10.0], jnp.float32)[:, None]
    cols = jnp.asarray([0.5, 3.0], jnp.float32)[None, :]
    tx = optix.scale_by_psgd_kron(trust_region_scale=None)
    params = jnp.zeros((3, 2))

    @jax.jit
    def run(key):
        def body(state, k):
            g = rows * jax.random.normal(k, (3, 2)) * cols
            u, state = tx.update(g, state)
            return state, u * u

        _, sq = jax.lax.scan(body, tx.init(params), jax.random.split(key, 4000))
        return jnp.mean(sq[2000:], axis=0)

    second = np.asarray(run(jax.random.PRNGKey(3)))
    np.testing.assert_allclose(second, 1.0, rtol=0.3)


def test_a_conv_kernel_is_its_matrix_view_and_a_cube_needs_a_spec():
    """A 4-D kernel ``(h, w, in, out)`` is preconditioned as the matrix ``(h w in, out)`` (the
    MatrixSpec default); a 3-D leaf without a spec is an error naming its path."""
    rng = np.random.default_rng(1)
    g = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)
    tx = optix.scale_by_psgd_kron()
    state = tx.init({"conv": g})
    assert [q.shape for q in state.leaves["conv"].factors] == [(18, 18), (4, 4)]
    u = tx.update({"conv": g}, state)[0]["conv"]
    flat = tx.update({"conv": g.reshape(18, 4)}, tx.init({"conv": g.reshape(18, 4)}))[0]["conv"]
    np.testing.assert_allclose(u, flat.reshape(g.shape), rtol=1e-6)
    with pytest.raises(ValueError, match=r"'layers/w'.*3 axes.*matrix_spec"):
        optix.psgd_kron(1e-3).init({"layers": {"w": jnp.zeros((2, 3, 4))}})


def test_a_stack_of_biases_is_so_many_vectors():
    """A spec that leaves the biases ``(L, d)`` of a layer stack no matrix makes them L vectors,
    each with its diagonal factor, stepped as L separate ``(d,)`` leaves."""
    rng = np.random.default_rng(2)
    spec = {"b": optix.MatrixSpec(batch_axes=(1,))}
    tx = optix.scale_by_psgd_kron(matrix_spec=spec)
    alone = optix.scale_by_psgd_kron()
    b0 = jnp.zeros((5, 3))
    state, s1 = tx.init({"b": b0}), alone.init({str(i): b0[:, i] for i in range(3)})
    assert [q.shape for q in state.leaves["b"].factors] == [(3, 5)]
    for _ in range(4):
        g = jnp.asarray(rng.standard_normal((5, 3)))
        u, state = tx.update({"b": g}, state)
        u1, s1 = alone.update({str(i): g[:, i] for i in range(3)}, s1)
        np.testing.assert_allclose(
            u["b"], np.stack([u1[str(i)] for i in range(3)], axis=1), rtol=1e-6
        )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="precond_update_every"):
        optix.psgd_kron(1e-3, precond_update_every=0)
    with pytest.raises(ValueError, match="init_scale"):
        optix.psgd_kron(1e-3, init_scale=0.0)
    with pytest.raises(ValueError, match="precond_lr"):
        optix.psgd_kron(1e-3, precond_lr=-0.1)
    with pytest.raises(ValueError, match="trust_region_scale"):
        optix.psgd_kron(1e-3, trust_region_scale=0.0)


def test_complex_params_are_refused():
    with pytest.raises((TypeError, ValueError), match="complex"):
        optix.psgd_kron(1e-3).init({"w": jnp.zeros((2, 2), jnp.complex64)})


def test_a_donating_jitted_step_matches_the_plain_one():
    tx = optix.psgd_kron(1e-2, weight_decay=1e-3, precond_update_every=2)
    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4), "s": jnp.ones(())}
    rng = np.random.default_rng(0)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), params)]
    grads = grads * 2 + [jax.tree.map(jnp.zeros_like, params)]

    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optix.apply_updates(params, updates), state

    donating = jax.jit(step, donate_argnums=(0, 1))
    p_d, s_d = jax.tree.map(jnp.copy, params), tx.init(params)
    p_r, s_r = params, tx.init(params)
    for g in grads:
        p_d, s_d = donating(p_d, s_d, g)
        p_r, s_r = step(p_r, s_r, g)
    for a, b in zip(jax.tree.leaves((p_d, s_d)), jax.tree.leaves((p_r, s_r)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
