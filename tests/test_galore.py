"""GaLore: the precision of its SVD and 3-d leaves.

The step-by-step comparisons with ``optax.contrib.galore`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import optix


def test_galore_default_svd_runs_in_the_gradient_precision(x64):
    """By default the projector is orthonormal to float64 precision; optax's float32 SVD is
    orthonormal only to float32's."""
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((6, 9)))}
    ours = optix.scale_by_galore(rank=3)
    _, state = ours.update(params, ours.init(params), params)
    p = np.asarray(state.projector["w"])
    assert p.shape == (9, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.T @ p, np.eye(3), atol=1e-13)
    theirs = optax.contrib.scale_by_galore(rank=3)
    with jax.numpy_dtype_promotion("standard"):
        _, t_state = theirs.update(params, theirs.init(params), params)
    q = np.asarray(t_state.projector["w"])
    assert np.abs(q.T @ q - np.eye(3)).max() > 1e-12


def test_galore_reads_a_3d_leaf_as_the_matrix_its_dimension_numbers_name(x64):
    """A (2, 3, 4) leaf read as rows (0, 2) and column 1 is the (8, 3) matrix x.transpose(0, 2, 1)."""
    rng = np.random.default_rng(1)
    grads = [jnp.asarray(rng.standard_normal((2, 3, 4))) for _ in range(3)]
    dims = optix.GaloreDimensionNumbers(reduction_axis=(0, 2), output_axis=1)
    cube = optix.scale_by_galore(rank=2, update_proj_gap=2, weight_dimension_numbers=dims)
    flat = optix.scale_by_galore(rank=2, update_proj_gap=2)
    s_cube, s_flat = cube.init(grads[0]), flat.init(grads[0].transpose(0, 2, 1).reshape(8, 3))
    for g in grads:
        u_cube, s_cube = cube.update(g, s_cube)
        u_flat, s_flat = flat.update(g.transpose(0, 2, 1).reshape(8, 3), s_flat)
        np.testing.assert_allclose(
            u_cube, u_flat.reshape(2, 4, 3).transpose(0, 2, 1), rtol=1e-12, atol=1e-14
        )
    assert s_cube.projector.shape == (8, 2)  # rows >= columns: projected from the left
    assert s_cube.inner.mu.shape == (2, 3)  # Adam's moments live in the rank-2 space
    with pytest.raises(ValueError, match="weight_dimension_numbers"):
        optix.scale_by_galore(weight_dimension_numbers=optix.GaloreDimensionNumbers(0, 0)).init(
            jnp.ones((3, 4))
        )
    with pytest.raises(ValueError, match="rank"):
        optix.galore(1e-3, rank=0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx = optix.galore(1e-3, base_optimizer=optix.adamw(1.0))
        tx.update(jnp.ones((3, 4)), tx.init(jnp.ones((3, 4))), jnp.ones((3, 4)))
