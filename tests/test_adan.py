"""Adan: where optix follows the paper and optax does not.

The step-by-step comparisons (the paper's Algorithm 1, and optax at ``b2 = 0.5``) are entries of
the reference registry, ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import optax.contrib

import optix
from tests.reference import SHAPES
from tests.reference import gradient_stream
from tests.reference import params_stream


def _as_jax(tree):
    return {k: jnp.asarray(v) for k, v in tree.items()}


def test_adan_differs_from_optax_at_default_b2(x64):
    """optax 0.2.8 weights the gradient difference by ``1 - b2`` (0.08), the paper and the
    authors' code by ``b2`` (0.92): from the second step on, the updates differ by percents."""
    ours, theirs = optix.adan(1e-2), optax.adan(1e-2, eps_root=0.0)
    grads, params = gradient_stream(0), params_stream(0)
    s_ours, s_theirs = ours.init(_as_jax(params[0])), theirs.init(_as_jax(params[0]))
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    worst = []
    for t in range(10):
        g, p = _as_jax(grads[t]), _as_jax(params[t])
        u_ours, s_ours = update_ours(g, s_ours, p)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = update_theirs(g, s_theirs, p)
        rel = max(
            float(jnp.max(jnp.abs(u_ours[k] - u_theirs[k])) / jnp.max(jnp.abs(u_theirs[k])))
            for k in SHAPES
        )
        worst.append(rel)
    assert worst[0] < 1e-12  # no difference yet: d_1 = 0
    assert max(worst[1:]) > 1e-2
