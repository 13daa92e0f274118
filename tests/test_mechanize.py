"""Mechanic (``mechanize``): the reference params and forwarded extras.

The step-by-step comparisons with ``optax.contrib.mechanize`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.reference import SHAPES


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}


def test_mechanize_takes_the_first_update_params_as_reference_and_forwards_extras(x64):
    """x_ref is the params of the first update (not those init saw: a loop may load pretrained
    weights in between), and extra keywords such as ``value=`` reach the base optimizer."""
    init_params, params, grads = _tree(4), _tree(5), _tree(6)
    tx = optix.mechanize(optix.sgd(0.1))
    state = tx.init(init_params)
    _, state = tx.update(grads, state, params)
    for k in SHAPES:
        np.testing.assert_array_equal(state.params0[k], params[k])
    seen = []

    def base_update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    spy = optix.GradientTransformation(lambda p: optix.EmptyState(), base_update)
    wrapped = optix.mechanize(spy)
    wrapped.update(grads, wrapped.init(params), params, value=1.0)
    assert seen == [["value"]]
    with pytest.raises(TypeError, match="not a gradient transformation"):
        optix.mechanize(optix.sgd)
    with pytest.raises(ValueError, match="num_betas"):
        optix.mechanize(optix.sgd(0.1), num_betas=0)
    with pytest.raises(ValueError, match="s_init"):
        optix.mechanize(optix.sgd(0.1), s_init=0.0)
