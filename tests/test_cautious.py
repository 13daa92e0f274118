"""cautious against a NumPy transcription of the rule (Liang et al. 2024) around AdamW.

Teacher-forced float64 steps (the ``x64`` fixture): both sides get the same params and gradients;
the updates agree at every step to ``rtol=1e-10`` (the same formulas in another order). A mask
with the wrong sign, a non-strict inequality, or the later ``n / max(kept, 1e-3 n)``
normalisation instead of ``n / (kept + 1)`` changes a step by far more.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests._modifiers import NumpyAdamW
from tests._modifiers import adamw
from tests._modifiers import bf16_donating_run
from tests._modifiers import teacher_forced


def _numpy_cautious(inner):
    def step(grads, params):
        u = inner(grads, params)
        out = {}
        for k, g in grads.items():
            keep = (u[k] * g < 0).astype(np.float64)
            out[k] = u[k] * keep * keep.size / (keep.sum() + 1)
        return out

    return step


def test_matches_numpy_around_adamw(x64):
    teacher_forced(optix.cautious(adamw()), _numpy_cautious(NumpyAdamW()), seed=0)


def test_drops_ascending_coordinates_and_rescales():
    tx = optix.cautious(optix.sgd(1.0))
    g = jnp.array([1.0, -2.0, 0.0, 3.0])
    updates, _ = tx.update(g, tx.init(jnp.zeros(4)), None)
    # sgd's step -g descends wherever g != 0: 3 of 4 kept, scaled by 4 / (3 + 1)
    np.testing.assert_allclose(updates, [-1.0, 2.0, 0.0, -3.0])
    tx = optix.cautious(optix.scale(1.0))  # a step along +g ascends everywhere: all dropped
    updates, _ = tx.update(g, tx.init(jnp.zeros(4)), None)
    np.testing.assert_array_equal(updates, np.zeros(4))


def test_bf16_params_in_a_donating_step():
    bf16_donating_run(optix.cautious(optix.adamw(1e-2)))


def test_inner_hyperparams_are_reachable():
    state = optix.cautious(optix.adamw(1e-2)).init({"w": jnp.zeros(3)})
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(1e-2)
    state = optix.set_hyperparams(state, learning_rate=1e-3)
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(1e-3)


def test_bad_arguments():
    with pytest.raises(TypeError, match="`tx`"):
        optix.cautious(optix.adam)
    tx = optix.cautious(optix.adam(1e-3))
    with pytest.raises(TypeError, match="complex"):
        tx.init({"w": jnp.zeros(2, jnp.complex64)})
    state = tx.init({"w": jnp.zeros(2)})
    with pytest.raises(TypeError, match="complex"):
        tx.update({"w": jnp.zeros(2, jnp.complex64)}, state)
    with pytest.raises(TypeError):
        optix.cautious(optix.adam(1e-3), mask_weight_decay=True)  # type: ignore[call-arg]


def test_jit_second_step_does_not_recompile_under_vmapped_states():
    # a batch of states (a hyperparameter sweep) goes through one compiled step
    tx = optix.cautious(optix.adam(1e-2))
    params = {"w": jnp.ones(3)}
    states = jax.vmap(lambda lr: optix.set_hyperparams(tx.init(params), learning_rate=lr))(
        jnp.array([1e-2, 1e-3])
    )
    updates, _ = jax.vmap(lambda s: tx.update({"w": jnp.ones(3)}, s, params))(states)
    assert updates["w"].shape == (2, 3)
