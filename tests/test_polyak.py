"""Polyak step size (``polyak_sgd``): the scaling sits outside the step size.

The step-by-step comparisons with ``optax.polyak_sgd`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import N_STEPS
from tests.reference import assert_updates_close
from tests.reference import gradient_stream
from tests.reference import params_stream
from tests.reference import polyak_loss_stream
from tests.reference import run_with_value


def test_polyak_sgd_scaling_is_outside_the_step_size(x64):
    """``-s min(gap / (|g|^2 + eps), gamma_max) g``; optax scales g by s before the step size."""
    s, f_min, max_lr, eps = 0.3, 0.5, 2.0, 1e-3

    def transcription(g, value):
        sq = sum(float(np.sum(x * x)) for x in g.values())
        step = (
            0.0 if sq + eps <= 2.220446049250313e-16 else min((value - f_min) / (sq + eps), max_lr)
        )
        return {k: -s * step * x for k, x in g.items()}

    ours = optix.polyak_sgd(max_lr, scaling=s, f_min=f_min, eps=eps)
    grads, params, values = gradient_stream(0), params_stream(0), polyak_loss_stream(0)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    state = ours.init(as_jax(params[0]))
    update = jax.jit(ours.update)
    for t in range(N_STEPS):
        v = jnp.float64(values[t])
        u, state = update(as_jax(grads[t]), state, as_jax(params[t]), value=v)
        assert_updates_close(u, transcription(grads[t], values[t]), t, "polyak_sgd")
    theirs = optax.polyak_sgd(max_lr, scaling=s, f_min=f_min, eps=eps)
    with pytest.raises(AssertionError, match="polyak_sgd"):
        run_with_value(
            optix.polyak_sgd(max_lr, scaling=s, f_min=f_min, eps=eps),
            theirs,
            "polyak_sgd",
            values=polyak_loss_stream,
        )
