"""graft against a NumPy transcription of layer-wise grafting (Agarwal et al. 2020) around AdamW:
AdamW's per-leaf step norm, SGD-with-momentum's direction.

Teacher-forced float64 steps (the ``x64`` fixture); the updates agree at every step to
``rtol=1e-10``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests._modifiers import SHAPES
from tests._modifiers import NumpyAdamW
from tests._modifiers import adamw
from tests._modifiers import bf16_donating_run
from tests._modifiers import teacher_forced


def _numpy_momentum(lr=0.1, momentum=0.9):
    trace = {k: np.zeros(s) for k, s in SHAPES.items()}

    def step(grads, params):
        for k, g in grads.items():
            trace[k] = momentum * trace[k] + g
        return {k: -lr * b for k, b in trace.items()}

    return step


def _numpy_graft(magnitude, direction, eps=1e-16):
    def step(grads, params):
        m, d = magnitude(grads, params), direction(grads, params)
        return {
            k: np.linalg.norm(m[k].ravel()) / max(np.linalg.norm(d[k].ravel()), eps) * d[k]
            for k in grads
        }

    return step


def test_matches_numpy_around_adamw(x64):
    tx = optix.graft(adamw(), optix.sgd(0.1, momentum=0.9))
    teacher_forced(tx, _numpy_graft(NumpyAdamW(), _numpy_momentum()), seed=2)


def test_zero_direction_gives_a_zero_step():
    tx = optix.graft(optix.sgd(1.0), optix.set_to_zero())
    updates, _ = tx.update(jnp.ones(3), tx.init(jnp.zeros(3)), None)
    np.testing.assert_array_equal(updates, np.zeros(3))
    assert bool(jnp.all(jnp.isfinite(updates)))


def test_both_states_and_their_hyperparams():
    tx = optix.graft(optix.adamw(1e-2), optix.sgd(0.1, momentum=0.9))
    state = tx.init({"w": jnp.zeros(3)})
    hp = optix.get_hyperparams(state)
    rates = sorted(k for k in hp if k.endswith("learning_rate"))
    assert len(rates) == 2 and rates[0].startswith("direction_state"), rates
    state = optix.set_hyperparams(state, {"magnitude_state/learning_rate": 1e-3})
    hp = optix.get_hyperparams(state)
    assert float(hp[rates[1]]) == pytest.approx(1e-3)
    assert float(hp[rates[0]]) == pytest.approx(0.1)
    # graft's own eps shares its name with adamw's: both are keyed by path
    assert "magnitude_state/0/eps" in hp and float(hp["eps"]) == pytest.approx(1e-16)


def test_bf16_params_in_a_donating_step():
    bf16_donating_run(optix.graft(optix.adamw(1e-2), optix.sgd(0.1, momentum=0.9)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="`magnitude_tx`"):
        optix.graft(optix.sgd, optix.adam(1e-3))
    with pytest.raises(TypeError, match="`direction_tx`"):
        optix.graft(optix.sgd(0.1), 3)
    with pytest.raises(ValueError, match="`eps`"):
        optix.graft(optix.sgd(0.1), optix.adam(1e-3), eps=0.0)
