"""mars against a NumPy transcription of the rule (Yuan et al. 2024, the approximate form, with
per-leaf clipping as in the authors' code) around AdamW.

Teacher-forced float64 steps (the ``x64`` fixture), with gradient norms spread over three decades
so that both branches of the clipping run; the updates agree at every step to ``rtol=1e-10``.
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
from tests._modifiers import stream
from tests._modifiers import teacher_forced

GAMMA, BETA = 0.2, 0.9


def _numpy_mars(inner):
    previous = {k: np.zeros(s) for k, s in SHAPES.items()}
    clipped = []

    def step(grads, params):
        c = {}
        for k, g in grads.items():
            ck = g + GAMMA * BETA / (1 - BETA) * (g - previous[k])
            norm = np.sqrt(np.sum(ck * ck))
            clipped.append(norm > 1)
            c[k] = ck / norm if norm > 1 else ck
            previous[k] = g
        return inner(c, params)

    step.clipped = clipped  # type: ignore[attr-defined]
    return step


def test_matches_numpy_around_adamw(x64):
    reference = _numpy_mars(NumpyAdamW())
    teacher_forced(optix.mars(adamw(), gamma=GAMMA, b1=BETA), reference, seed=1, spread=1.5)
    assert any(reference.clipped) and not all(reference.clipped)  # type: ignore[attr-defined]


def test_exact_form_matches_numpy_around_adamw(x64):
    """The exact form (Algorithm 1): the caller's gradient at the previous params on this
    minibatch replaces the stored one; the state keeps no gradient buffer."""
    import chex
    import jax

    tx = optix.mars(adamw(), gamma=GAMMA, b1=BETA, exact=True)
    inner = NumpyAdamW()
    data, previous = stream(1, spread=1.5), stream(2, spread=1.5)
    state = tx.init(jax.tree.map(jnp.asarray, data[0][0]))
    assert state.previous is None
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(grads, state, params, previous_grad):
        return tx.update(grads, state, params, previous_grad=previous_grad)

    clipped = []
    for t, ((params, grads), (_, g_prev)) in enumerate(zip(data, previous, strict=True)):
        updates, state = step(grads, state, params, g_prev)
        c = {}
        for k, g in grads.items():
            ck = g + GAMMA * BETA / (1 - BETA) * (g - g_prev[k])
            norm = np.sqrt(np.sum(ck * ck))
            clipped.append(norm > 1)
            c[k] = ck / norm if norm > 1 else ck
        expected = inner(c, params)
        for k in grads:
            np.testing.assert_allclose(
                updates[k], expected[k], rtol=1e-10, atol=1e-14, err_msg=f"step {t + 1}, {k}"
            )
    assert any(clipped) and not all(clipped)
    with pytest.raises(ValueError, match="previous_grad"):
        tx.update(data[0][1], state, data[0][0])


def test_state_and_hyperparams():
    tx = optix.mars(optix.adamw(1e-2, b1=0.95), gamma=0.05, b1=0.95)
    params = {"w": jnp.zeros(3, jnp.bfloat16)}
    state = tx.init(params)
    assert state.previous["w"].dtype == jnp.float32
    hp = optix.get_hyperparams(state)
    assert float(hp["gamma"]) == pytest.approx(0.05)
    assert float(hp["learning_rate"]) == pytest.approx(1e-2)
    # b1 is both mars's and adamw's: adamw's is keyed by its path
    assert float(hp["b1"]) == pytest.approx(0.95) and "inner_state/0/b1" in hp
    state = optix.set_hyperparams(state, gamma=0.1, learning_rate=1e-3)
    hp = optix.get_hyperparams(state)
    assert float(hp["gamma"]) == pytest.approx(0.1)
    assert float(hp["learning_rate"]) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="gamma"):
        optix.set_hyperparams(state, gamma=-1.0)


def test_bf16_params_in_a_donating_step():
    bf16_donating_run(optix.mars(optix.adamw(1e-2)))


def test_bad_arguments():
    with pytest.raises(TypeError, match="`tx`"):
        optix.mars(optix.adamw)
    with pytest.raises(ValueError, match="`gamma`"):
        optix.mars(optix.adamw(1e-3), gamma=-0.1)
    with pytest.raises(ValueError, match="`b1`"):
        optix.mars(optix.adamw(1e-3), b1=1.0)
    tx = optix.mars(optix.adamw(1e-3))
    state = tx.init({"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match="structure|shape"):
        tx.update({"v": jnp.zeros(2)}, state)
