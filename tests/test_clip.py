"""``clip_by_global_norm``: all-zero gradients, norms below, at and above ``max_norm``.

Its step-by-step comparison with ``optax.clip_by_global_norm`` is an entry of
``tests/references.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.reference import SHAPES

# ---------------------------------------------------------------------------------------------
# clip_by_global_norm edge cases.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("max_norm", [1.0, 0.0])
def test_clip_by_global_norm_all_zero_gradient_is_zero(dtype, max_norm):
    tx = optix.clip_by_global_norm(max_norm)
    zeros = {k: jnp.zeros(s, dtype) for k, s in SHAPES.items()}
    out, _ = jax.jit(tx.update)(zeros, tx.init(zeros))
    for k in SHAPES:
        assert out[k].dtype == dtype
        got = np.asarray(out[k]).astype(np.float32)
        assert not np.any(np.isnan(got)), k
        np.testing.assert_array_equal(got, 0.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_clip_by_global_norm_below_max_norm_is_unchanged_exactly(dtype, x64):
    rng = np.random.default_rng(7)
    tx = optix.clip_by_global_norm(10.0)
    update = jax.jit(tx.update)
    for scale in (1e-30, 1e-6, 0.1, 1.0, 1.5):  # norms far below up to just below 10
        g = {k: jnp.asarray(scale * rng.standard_normal(s), dtype) for k, s in SHAPES.items()}
        out, _ = update(g, tx.init(g))
        for k in SHAPES:
            assert out[k].dtype == dtype
            np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(g[k]), err_msg=f"{scale}")
    # A norm exactly equal to max_norm is not clipped either: 3-4-5.
    g = {"a": jnp.asarray([3.0, 4.0], dtype)}
    out, _ = optix.clip_by_global_norm(5.0).update(g, optix.clip_by_global_norm(5.0).init(g))
    np.testing.assert_array_equal(np.asarray(out["a"]), np.asarray(g["a"]))


def test_clip_by_global_norm_above_max_norm_has_norm_max_norm(x64):
    g = {k: jnp.asarray(3.0 * np.ones(s), jnp.float64) for k, s in SHAPES.items()}
    tx = optix.clip_by_global_norm(0.5)
    out, _ = jax.jit(tx.update)(g, tx.init(g))
    norm = math.sqrt(sum(float(jnp.sum(x**2)) for x in out.values()))
    assert norm == pytest.approx(0.5, rel=1e-14)


# ---------------------------------------------------------------------------------------------
# Gradient noise: add_noise / noisy_sgd.
# ---------------------------------------------------------------------------------------------
