"""NovoGrad: one second-moment scalar per leaf.

The step-by-step comparisons with ``optax.novograd`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax.numpy as jnp

import optix


def test_novograd_second_moment_is_one_scalar_per_leaf(x64):
    params = {"w": jnp.ones((3, 4), jnp.bfloat16), "b": jnp.zeros(4, jnp.bfloat16)}
    state = optix.novograd(1e-2).init(params)
    nu = state[0].nu
    assert nu["w"].shape == () and nu["b"].shape == ()
    assert nu["w"].dtype == jnp.float64  # at least the hyperparameter precision
    # accumulators default to at least float32 (the compute dtype: float64 here, under x64)
    assert state[0].mu["w"].dtype == jnp.float64
