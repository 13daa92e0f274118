"""Momentum's dampening term: a literal 0 builds none (no state, no work per leaf), an array keeps
it settable, and both give the same updates."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import optix


def _run(tx, steps=3):
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.25)}
    state = tx.init(params)
    out = []
    for t in range(steps):
        grads = {"w": jnp.array([0.3, -0.1, 2.0]) * (t + 1), "b": jnp.array(-1.0)}
        updates, state = tx.update(grads, state, params)
        params = optix.apply_updates(params, updates)
        out.append(updates)
    return out, state


def test_literal_zero_dampening_keeps_no_term_and_array_zero_stays_settable():
    literal, literal_state = _run(optix.sgd(0.1, momentum=0.9))
    array, array_state = _run(optix.sgd(0.1, momentum=0.9, dampening=jnp.float32(0.0)))
    assert "dampening" not in optix.get_hyperparams(literal_state)
    assert "dampening" in optix.get_hyperparams(array_state)
    for a, b in zip(literal, array, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])  # the same values, bit for bit
    with pytest.raises(ValueError, match="dampening"):
        optix.set_hyperparams(literal_state, dampening=0.5)
    damped = optix.set_hyperparams(array_state, dampening=0.5)
    assert float(optix.get_hyperparams(damped)["dampening"]) == 0.5
