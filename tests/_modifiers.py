"""Shared pieces of the tests of the modifiers (``cautious``, ``mars``, ``graft``): a NumPy
AdamW, a teacher-forced driver, and the step that donates its params and state."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

import optix

N_STEPS = 120
SHAPES = {"w": (3, 4), "b": (5,), "s": ()}
LR, B1, B2, EPS, WD = 1e-2, 0.9, 0.999, 1e-8, 1e-2


def stream(seed: int, spread: float = 0.0):
    """``N_STEPS`` (params, grads) pairs of float64 NumPy trees, fixed in advance (teacher
    forcing: both sides get the same inputs, whatever they returned). With ``spread``, each
    gradient leaf is scaled by ``10**U(-spread, spread)`` (norms on both sides of 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(N_STEPS):
        params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
        grads = {
            k: rng.normal(size=s) * 10 ** rng.uniform(-spread, spread) for k, s in SHAPES.items()
        }
        out.append((params, grads))
    return out


class NumpyAdamW:
    """AdamW, written out: the step (after the learning rate) of ``optix.adamw(LR)``."""

    def __init__(self):
        self.m = {k: np.zeros(s) for k, s in SHAPES.items()}
        self.v = {k: np.zeros(s) for k, s in SHAPES.items()}
        self.t = 0

    def __call__(self, grads, params):
        self.t += 1
        out = {}
        for k, g in grads.items():
            self.m[k] = B1 * self.m[k] + (1 - B1) * g
            self.v[k] = B2 * self.v[k] + (1 - B2) * g * g
            m_hat = self.m[k] / (1 - B1**self.t)
            v_hat = self.v[k] / (1 - B2**self.t)
            out[k] = -LR * (m_hat / (np.sqrt(v_hat) + EPS) + WD * params[k])
        return out


def adamw() -> optix.GradientTransformation:
    return optix.adamw(LR, B1, B2, EPS, weight_decay=WD)


def teacher_forced(tx, reference, seed: int = 0, spread: float = 0.0) -> None:
    """Feed the same (params, grads) stream to ``tx`` (jitted, traced once) and to the NumPy
    ``reference(grads, params) -> updates``; the updates agree at every step (float64)."""
    data = stream(seed, spread)
    state = tx.init(jax.tree.map(jnp.asarray, data[0][0]))
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(grads, state, params):
        return tx.update(grads, state, params)

    for t, (params, grads) in enumerate(data):
        updates, state = step(grads, state, params)
        expected = reference(grads, params)
        for k in SHAPES:
            assert updates[k].dtype == jnp.float64
            np.testing.assert_allclose(
                updates[k], expected[k], rtol=1e-10, atol=1e-14, err_msg=f"step {t + 1}, {k}"
            )


def bf16_donating_run(tx) -> None:
    """Two steps of a jitted step donating params and state, on bfloat16 params: the state owns
    its buffers, the updates are bfloat16 and finite."""
    from tests.test_contract import _grads
    from tests.test_contract import _params
    from tests.test_donation import _run_donating_step

    params, _ = _run_donating_step(tx, _params(jnp.bfloat16))
    updates, _ = jax.jit(tx.update)(_grads(params), tx.init(params), params)
    for u in jax.tree.leaves(updates):
        assert u.dtype == jnp.bfloat16
        assert bool(jnp.all(jnp.isfinite(u)))
