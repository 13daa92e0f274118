"""Adamax with eps outside the max, against a transcription.

The step-by-step comparisons with torch.optim.Adamax and optax.adamax are in
``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import optix
from tests.reference import SHAPES
from tests.reference import assert_updates_close
from tests.reference import gradient_stream


def test_adamax_eps_outside_max_matches_transcription(x64):
    """``eps_in_max=False``: ``u_inf = max(b2 * u_inf, |g|)`` and ``m_hat / (u_inf + eps)``
    (the convention optix's docstring attributes to optax; optax's adamax is the default one)."""
    lr, b1, b2, eps = 1e-2, 0.85, 0.99, 1e-3
    tx = optix.adamax(lr, b1=b1, b2=b2, eps=eps, eps_in_max=False)
    grads = gradient_stream(5)
    state = tx.init({k: jnp.zeros(s, jnp.float64) for k, s in SHAPES.items()})
    update = jax.jit(tx.update)
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    u_inf = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t, g_np in enumerate(grads, start=1):
        u, state = update({k: jnp.asarray(v, jnp.float64) for k, v in g_np.items()}, state)
        want = {}
        for k, g in g_np.items():
            m[k] = b1 * m[k] + (1 - b1) * g
            u_inf[k] = np.maximum(b2 * u_inf[k], np.abs(g))
            want[k] = -lr * (m[k] / (1 - b1**t)) / (u_inf[k] + eps)
        assert_updates_close(u, want, t, "adamax(eps_in_max=False)")
