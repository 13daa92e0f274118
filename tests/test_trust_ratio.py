"""``scale_by_trust_ratio``: the zero-norm conventions, per leaf.

LAMB, LARS, NovoGrad, Fromage and ``scale_by_trust_ratio`` are checked against optax 0.2.8 step
by step in the reference registry, ``tests/references.py``: 120 float64 teacher-forced steps at
``rtol=1e-10`` (``tests/reference.py`` says why this tolerance separates rounding from a
convention mismatch); optix matches each with the same float64 formulas, so no tolerance is
loosened.
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


def test_trust_ratio_zero_norm_conventions(x64):
    """A zero param norm or a zero update norm leaves the update unchanged (ratio 1); with a
    ``min_norm`` floor neither norm is zero and the floored ratio applies."""
    tx = optix.scale_by_trust_ratio()
    params = {"zero_p": jnp.zeros(3), "zero_u": jnp.ones(3), "both": jnp.array([3.0, 4.0, 0.0])}
    grads = {
        "zero_p": jnp.array([1.0, 2.0, 2.0]),
        "zero_u": jnp.zeros(3),
        "both": jnp.array([0.0, 0.0, 2.0]),
    }
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_array_equal(out["zero_p"], grads["zero_p"])
    np.testing.assert_array_equal(out["zero_u"], 0.0)
    np.testing.assert_allclose(out["both"], [0.0, 0.0, 5.0], rtol=1e-15)

    floored = optix.scale_by_trust_ratio(min_norm=0.5)
    out, _ = floored.update(grads, floored.init(params), params)
    # zero params: ratio 0.5 / ||g|| = 0.5 / 3
    np.testing.assert_allclose(out["zero_p"], np.array([1.0, 2.0, 2.0]) * 0.5 / 3.0, rtol=1e-15)


def test_trust_ratio_is_per_leaf_not_global(x64):
    """Each leaf's factor uses that leaf's norms only: rescaling one leaf's gradient leaves the
    other leaves' LAMB updates unchanged, and the result is the per-leaf formula."""
    tx = optix.lamb(0.1)
    p = {k: jnp.asarray(v) for k, v in params_stream(4)[0].items()}
    g = {k: jnp.asarray(v) for k, v in gradient_stream(4)[0].items()}
    update = jax.jit(tx.update)
    u1, _ = update(g, tx.init(p), p)
    g2 = dict(g, matrix=1e3 * g["matrix"])
    u2, _ = update(g2, tx.init(p), p)
    for k in ("scalar", "vector"):
        np.testing.assert_array_equal(u1[k], u2[k])
    for k in SHAPES:
        # first Adam step: m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps) elementwise
        r = np.asarray(g[k]) / (np.abs(np.asarray(g[k])) + 1e-6)
        want = -0.1 * _np_norm(p[k]) / _np_norm(r) * r
        np.testing.assert_allclose(u1[k], want, rtol=1e-12)
