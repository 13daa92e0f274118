"""Rprop: optax's one-step lag, step sizes relative to the learning rate, bounds, complex params.

Rprop's step-by-step comparisons with torch.optim.Rprop (and those of the other elementwise
optimizers with optax, optax.contrib and the Adan paper) are entries of the reference registry,
``tests/references.py``: 120 teacher-forced float64 steps; against torch ``rtol=1e-10``,
``atol=1e-12`` (torch's update is read back as ``new - old``, which loses up to one ulp of
``|param|``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import optix
from tests.reference import SHAPES
from tests.reference import assert_updates_close
from tests.reference import gradient_stream


def _as_jax(tree):
    return {k: jnp.asarray(v) for k, v in tree.items()}


# --- Paper transcriptions and schedules, written from the papers (not from either library) -----


# --- Teacher-forced comparisons: name -> (optix factory, reference factory) --------------------


# --- Rprop against torch.optim.Rprop ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{}, {"eta_minus": 0.3, "eta_plus": 1.5, "min_step_size": 1e-3, "max_step_size": 0.5}]
)
def test_optax_rprop_lags_one_step_behind(kwargs, x64):
    """optax 0.2.8's ``scale_by_rprop`` returns the *previous* step's update (zeroed where the
    sign flips now; all zeros at the first step): google-deepmind/optax PR #1725. optix follows
    torch.optim.Rprop (checked above); with that lag put back, optax agrees with optix."""
    ours, theirs = optix.rprop(0.05, **kwargs), optax.rprop(0.05, **kwargs)
    grads = gradient_stream(5)
    s_ours, s_theirs = ours.init(_as_jax(grads[0])), theirs.init(_as_jax(grads[0]))
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    kept = {k: np.zeros(s) for k, s in SHAPES.items()}  # previous gradient, zeroed at flips
    previous = None
    for t, g in enumerate(grads):
        u_ours, s_ours = update_ours(_as_jax(g), s_ours)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = update_theirs(_as_jax(g), s_theirs)
        flip = {k: g[k] * kept[k] < 0 for k in SHAPES}
        kept = {k: np.where(flip[k], 0.0, g[k]) for k in SHAPES}
        want = (
            {k: np.zeros(s) for k, s in SHAPES.items()}
            if previous is None
            else {k: np.where(flip[k], 0.0, previous[k]) for k in SHAPES}
        )
        assert_updates_close(u_theirs, want, t, "optax rprop = optix rprop one step late")
        previous = {k: np.asarray(v) for k, v in u_ours.items()}


def test_rprop_learning_rate_rescales_the_adapted_step_sizes(x64):
    """Step sizes are kept relative to ``learning_rate``: setting it mid-run scales every step
    size (torch and optax read it only once, so there this is a deliberate extension)."""
    tx = optix.rprop(0.1)
    update = jax.jit(tx.update)
    grads = gradient_stream(4)
    state = tx.init({k: jnp.zeros(s) for k, s in SHAPES.items()})
    for t in range(6):
        _, state = update(_as_jax(grads[t]), state)
    g = _as_jax(grads[6])
    kept, _ = update(g, state)
    lowered, _ = update(g, optix.set_hyperparams(state, learning_rate=0.01))
    for k in SHAPES:
        np.testing.assert_allclose(lowered[k], kept[k] / 10, rtol=1e-13, atol=0)


def test_rprop_step_sizes_stay_within_bounds():
    tx = optix.rprop(0.1, min_step_size=1e-3, max_step_size=0.4)
    update = jax.jit(tx.update)
    p = {"w": jnp.zeros(2)}
    state = tx.init(p)
    for _ in range(40):  # same sign: grows by 1.2 until the max
        u, state = update({"w": jnp.array([1.0, -1.0])}, state)
    np.testing.assert_allclose(u["w"], [-0.4, 0.4], rtol=1e-6)
    sizes = []
    for t in range(80):  # alternating signs: halves every other step until the min
        u, state = update({"w": jnp.array([1.0, -1.0]) * (-1.0) ** t}, state)
        sizes.append(float(jnp.max(jnp.abs(u["w"]))))
    nonzero = [s for s in sizes if s > 0]
    assert sizes.count(0.0) >= 30  # each flip skips that step
    np.testing.assert_allclose(nonzero[-1], 1e-3, rtol=1e-6)
    assert min(nonzero) >= 1e-3 * (1 - 1e-6)


# --- ADOPT specifics ----------------------------------------------------------------------------


def test_rprop_rejects_complex():
    with pytest.raises(TypeError, match="complex"):
        optix.rprop(0.1).init({"w": jnp.ones(3, jnp.complex64)})


# --- dtypes, validation, hyperparameters --------------------------------------------------------
