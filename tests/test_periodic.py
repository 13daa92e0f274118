"""``periodic_update`` against optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optix
from tests.reference import SHAPES


def test_periodic_update_matches_optax(x64):
    rng = np.random.default_rng(0)
    new = {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}
    old = {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}
    for step in range(13):
        got = jax.jit(optix.periodic_update, static_argnums=3)(new, old, step, 4)
        want = optax.periodic_update(new, old, step, 4)
        for k in SHAPES:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"step {step}")
