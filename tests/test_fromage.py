"""Fromage: the paper's step, and its precision in float32.

The step-by-step comparisons with ``optax.fromage`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import optix
from tests.reference import SHAPES
from tests.reference import gradient_stream
from tests.reference import params_stream


def _np_norm(x):
    return float(np.sqrt(np.sum(np.asarray(x, np.float64) ** 2)))


def test_fromage_step_is_the_paper_formula(x64):
    """theta_new = (theta - eta ||theta|| / ||g|| g) / sqrt(1 + eta^2), leaf by leaf."""
    eta = 0.3
    tx = optix.fromage(eta)
    p = {k: jnp.asarray(v) for k, v in params_stream(5)[0].items()}
    g = {k: jnp.asarray(v) for k, v in gradient_stream(5)[0].items()}
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    new = optix.apply_updates(p, u)
    for k in SHAPES:
        pk, gk = np.asarray(p[k]), np.asarray(g[k])
        want = (pk - eta * _np_norm(pk) / _np_norm(gk) * gk) / np.sqrt(1 + eta**2)
        np.testing.assert_allclose(new[k], want, rtol=1e-13, atol=1e-15)


def test_fromage_float32_keeps_precision_of_the_shrink():
    """In float32 the shrink ``(1/sqrt(1+eta^2) - 1) theta`` is formed without cancellation: the
    float32 step agrees with the float64 formula to float32 rounding, even for small ``eta``."""
    eta = 1e-3
    rng = np.random.default_rng(8)
    p64, g64 = rng.standard_normal(50), rng.standard_normal(50)
    tx = optix.fromage(eta)
    p, g = jnp.asarray(p64, jnp.float32), jnp.asarray(g64, jnp.float32)
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    p64, g64 = np.asarray(p, np.float64), np.asarray(g, np.float64)
    root = np.sqrt(1 + eta**2)
    want = -eta / root * _np_norm(p64) / _np_norm(g64) * g64 - (1 - 1 / root) * p64
    np.testing.assert_allclose(np.asarray(u, np.float64), want, rtol=1e-5, atol=1e-6 * eta)
