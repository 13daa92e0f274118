"""LARS: the trust-ratio mask.

The step-by-step comparisons with ``optax.lars`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import optix
from tests.reference import SHAPES
from tests.reference import gradient_stream
from tests.reference import params_stream


def test_lars_trust_ratio_mask_leaves_plain_sgd_momentum(x64):
    """Leaves outside ``trust_ratio_mask`` take heavy-ball SGD steps on g + wd * p."""
    lr, wd, mu = 0.1, 0.01, 0.9
    mask = {"scalar": False, "vector": False, "matrix": True}
    tx = optix.lars(lr, weight_decay=wd, trust_ratio_mask=mask, momentum=mu)
    grads, params = gradient_stream(6), params_stream(6)
    state = tx.init({k: jnp.asarray(v) for k, v in params[0].items()})
    update = jax.jit(tx.update)
    buf = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t in range(20):
        g = {k: jnp.asarray(v) for k, v in grads[t].items()}
        p = {k: jnp.asarray(v) for k, v in params[t].items()}
        u, state = update(g, state, p)
        for k in ("scalar", "vector"):
            buf[k] = mu * buf[k] + lr * (grads[t][k] + wd * params[t][k])
            np.testing.assert_allclose(u[k], -buf[k], rtol=1e-12, atol=1e-300)
