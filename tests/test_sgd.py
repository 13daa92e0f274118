"""SGD: momentum's dampening term, and the statistics of ``noisy_sgd``'s gradient noise.

A literal 0 dampening builds no term (no state, no work per leaf), an array keeps it settable,
and both give the same updates. Noise is random: ``noisy_sgd`` is checked exactly against its
documented construction (``optix.noise_key``) in float32 in ``tests/references.py``, and
statistically against theory and optax here. SGD's step-by-step comparisons with torch.optim.SGD
and optax.sgd are entries of ``tests/references.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


N_BIG = 20_000


STAT_STEPS = (0, 10, 99)


# The sample standard deviation of n iid normals has relative standard error 1/sqrt(2 (n - 1)):
# 0.5% for n = 20000. Five standard errors (2.5%) against the theoretical value; the ratio of two
# independent estimates has sqrt(2) times that error (3.5% at five standard errors).
REL_SE = 1 / math.sqrt(2 * (N_BIG - 1))


def _noise_per_step(tx, steps: int) -> list[np.ndarray]:
    """With zero gradients and learning rate 1, ``-update`` is the noise itself."""
    zero = {"big": jnp.zeros((N_BIG,), jnp.float32)}
    state = tx.init(zero)
    update = jax.jit(tx.update)
    out = []
    for _ in range(steps):
        u, state = update(zero, state, zero)
        out.append(-np.asarray(u["big"], np.float64))
    return out


def test_noisy_sgd_statistics_match_theory_and_optax():
    eta, gamma = 0.04, 0.55
    ours = _noise_per_step(optix.noisy_sgd(1.0, eta=eta, gamma=gamma, seed=0), max(STAT_STEPS) + 1)
    with jax.numpy_dtype_promotion("standard"):
        theirs = _noise_per_step(
            optax.noisy_sgd(1.0, eta=eta, gamma=gamma, key=0), max(STAT_STEPS) + 1
        )
    for t in STAT_STEPS:
        sigma = math.sqrt(eta / (1 + t) ** gamma)
        s_ours, s_theirs = float(np.std(ours[t], ddof=1)), float(np.std(theirs[t], ddof=1))
        assert s_ours / sigma == pytest.approx(1.0, abs=5 * REL_SE), f"t={t}"
        assert s_theirs / sigma == pytest.approx(1.0, abs=5 * REL_SE), f"optax t={t}"
        assert s_ours / s_theirs == pytest.approx(1.0, abs=5 * math.sqrt(2) * REL_SE), f"t={t}"
        # Mean 0: the sample mean's standard error is sigma / sqrt(n).
        assert abs(float(np.mean(ours[t]))) < 5 * sigma / math.sqrt(N_BIG), f"t={t}"
    # The variance anneals as (1 + t)**-gamma: std(t=0) / std(t=99) = 100**(gamma / 2).
    ratio = float(np.std(ours[0]) / np.std(ours[99]))
    assert ratio == pytest.approx(100 ** (gamma / 2), rel=5 * math.sqrt(2) * REL_SE)
    # Fresh noise every step: consecutive steps are uncorrelated (|r| < 5 / sqrt(n)).
    for t in (0, 10, 98):
        r = float(np.corrcoef(ours[t], ours[t + 1])[0, 1])
        assert abs(r) < 5 / math.sqrt(N_BIG), f"t={t}: r={r}"
