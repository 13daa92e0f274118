"""``scale_by_sign`` is the sign of the gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import optix
from tests.reference import SHAPES
from tests.reference import gradient_stream


def test_scale_by_sign_is_sign(x64):
    tx = optix.scale_by_sign()
    grads = gradient_stream(3)
    update = jax.jit(tx.update)
    state = tx.init({k: jnp.zeros(s, jnp.float64) for k, s in SHAPES.items()})
    for t, g_np in enumerate(grads):
        g = {k: jnp.asarray(v, jnp.float64) for k, v in g_np.items()}
        u, state = update(g, state)
        for k in SHAPES:
            assert u[k].dtype == jnp.float64
            np.testing.assert_array_equal(u[k], np.sign(g_np[k]), err_msg=f"step {t} leaf {k}")
            np.testing.assert_array_equal(u[k], jnp.sign(g[k]), err_msg=f"step {t} leaf {k}")
