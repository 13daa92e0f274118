"""The sign methods (signSGD, Signum, Lion) on complex parameters.

The step-by-step comparisons with optax are in ``tests/references.py``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import optix


def test_sign_methods_use_the_complex_phase():
    """``sign(z) = z / |z|`` for complex leaves (the update keeps the gradient's phase)."""
    z = jnp.array([3 + 4j, -2j], jnp.complex64)
    for tx in (optix.sign_sgd(1.0), optix.signum(1.0, beta=0.0), optix.lion(1.0, b1=0.0)):
        params = {"w": jnp.zeros(2, jnp.complex64)}
        u, _ = tx.update({"w": z}, tx.init(params), params)
        np.testing.assert_allclose(u["w"], -np.asarray(z) / np.abs(np.asarray(z)), rtol=1e-6)
