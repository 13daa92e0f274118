"""COCOB: where its learning rate acts (optix scales the step, optax the gradient).

The step-by-step comparisons with ``optax.contrib.cocob`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import optix
from tests.reference import SHAPES


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}


def test_cocob_learning_rate_scales_the_step_where_optax_scales_the_gradient(x64):
    """optix multiplies COCOB's step by the learning rate; optax multiplies the gradient, which
    the bet is invariant to (up to eps), so optax's constant learning rate changes nothing."""
    params, grads = _tree(0), _tree(1)
    stream = [grads, jax.tree.map(lambda g: -0.5 * g, grads), grads]

    def run(tx):
        state, out = tx.init(params), []
        for g in stream:
            u, state = tx.update(g, state, params)
            out.append(u)
        return out

    ours_1, ours_small = run(optix.cocob(1.0)), run(optix.cocob(0.1))
    theirs_1, theirs_small = run(optax.contrib.cocob(1.0)), run(optax.contrib.cocob(0.1))
    for a, b, c, d in zip(ours_1, ours_small, theirs_1, theirs_small, strict=True):
        for k in SHAPES:
            np.testing.assert_allclose(b[k], 0.1 * a[k], rtol=1e-12)
            np.testing.assert_allclose(c[k], a[k], rtol=1e-10)
            np.testing.assert_allclose(d[k], c[k], rtol=1e-6)  # optax: the rate had no effect
