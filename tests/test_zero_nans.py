"""``zero_nans`` against optax where there are NaNs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

import optix


def test_zero_nans_matches_optax_where_there_are_nans(x64):
    g = {
        "scalar": jnp.float64(jnp.nan),
        "vector": jnp.asarray([1.0, jnp.nan, -jnp.inf, 0.0, jnp.nan, 2.0]),
        "matrix": jnp.ones((3, 4)),
    }
    ours, theirs = optix.zero_nans(), optax.zero_nans()
    u, s = ours.update(g, ours.init(g))
    u_optax, s_optax = theirs.update(g, theirs.init(g))
    for k in g:
        np.testing.assert_array_equal(u[k], u_optax[k])
        assert bool(s.found_nan[k]) == bool(s_optax.found_nan[k])
