"""``scale_by_stddev``: where its default differs from optax's.

The step-by-step comparisons with ``optax.scale_by_stddev`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optix
from tests.reference import (
    SHAPES,
    gradient_stream,
    params_stream,
)


def _max_rel_diff(ours, theirs, seed: int = 0) -> float:
    """The largest relative difference of the two transforms' updates over teacher-forced steps."""
    grads, params = gradient_stream(seed), params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    s_ours, s_theirs = ours.init(as_jax(params[0])), theirs.init(as_jax(params[0]))
    worst = 0.0
    for g, p in zip(grads, params, strict=True):
        u_ours, s_ours = ours.update(as_jax(g), s_ours, as_jax(p))
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = theirs.update(as_jax(g), s_theirs, as_jax(p))
        for k in SHAPES:
            a, b = np.asarray(u_ours[k]), np.asarray(u_theirs[k])
            worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-300), initial=0.0)))
    return worst


def test_scale_by_stddev_default_puts_eps_outside_the_root_unlike_optax(x64):
    assert _max_rel_diff(optix.scale_by_stddev(0.9, 1e-2), optax.scale_by_stddev(0.9, 1e-2)) > 1e-3
