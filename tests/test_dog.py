"""DoG: the first step sizes follow ``init_step``.

The step-by-step comparisons with ``optax.contrib.dog`` and ``dowg`` are in
``tests/references.py``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import optix
from tests.reference import SHAPES


def _one_step(tx, params, grads):
    return tx.update(grads, tx.init(params), params)[0]


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}


def test_dog_first_step_sizes_follow_init_step(x64):
    """The first DoG step size: r_eps / ||g|| (distance), a (1 + ||x_0||) / ||g|| (heuristic),
    or the given rate (learning_rate)."""
    params, grads = _tree(2), _tree(3)
    gnorm = float(np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in grads.values())))
    pnorm = float(np.sqrt(sum(np.sum(np.asarray(p) ** 2) for p in params.values())))
    cases = {
        ("distance", 0.3): 0.3 / gnorm,
        ("heuristic", 1e-3): 1e-3 * (1 + pnorm) / gnorm,
        ("learning_rate", 0.02): 0.02,
    }
    for init_step, eta in cases.items():
        u = _one_step(optix.dog(init_step=init_step, eps=0.0), params, grads)
        for k in SHAPES:
            np.testing.assert_allclose(u[k], -eta * np.asarray(grads[k]), rtol=1e-12)
