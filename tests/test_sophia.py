"""Sophia: Hutchinson's estimator, the paper's order of refresh and step, convergence.

The step-by-step comparisons with ``optax.contrib.sophia`` are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.reference import SHAPES
from tests.reference import train_scanned
from tests.transcriptions import SEPARABLE_CURVATURE
from tests.transcriptions import separable_objective


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}


def test_hutchinson_estimate_is_exact_for_diagonal_and_unbiased_otherwise(x64):
    params = _tree(7)
    est = optix.hutchinson_hessian_diag(seed=3)
    h, state = est.update(params, est.init(params), params, obj_fn=separable_objective)
    for k in SHAPES:
        np.testing.assert_allclose(
            h[k], 2 * SEPARABLE_CURVATURE[k] + 1.2 * np.asarray(params[k]) ** 2
        )
    a = jnp.asarray(np.random.default_rng(0).standard_normal((4, 4)))
    hess = a @ a.T + 4 * jnp.eye(4)
    f = lambda p: 0.5 * p @ hess @ p  # noqa: E731
    x = jnp.zeros(4)
    state, total = est.init(x), jnp.zeros(4)
    draws = 4000
    step = jax.jit(lambda s: est.update(x, s, x, obj_fn=f))
    for _ in range(draws):
        h, state = step(state)
        total = total + h
    # each draw is diag(H) + sum_{j != i} H_ij u_i u_j: mean diag(H), std ||offdiag row||
    spread = np.sqrt(np.sum(np.asarray(hess) ** 2, 1) - np.diag(hess) ** 2)
    np.testing.assert_allclose(total / draws, np.diag(hess), atol=float(5 * spread.max() / 63))
    with pytest.raises(ValueError, match="obj_fn"):
        est.update(x, state, x)


def test_sophia_paper_order_refreshes_the_hessian_before_the_first_step(x64):
    """optax (default): the first step sees h = 0, so it is clip(m_hat / eps) = a sign step;
    the paper (refresh_first=True, bias_correction=False): h = (1 - b2) diag(H) first."""
    params, grads = _tree(8), _tree(9)
    b1, b2, gamma = 0.965, 0.99, 0.01
    default = optix.scale_by_sophia(b1, b2, gamma=gamma, clip_threshold=1.0)
    u, _ = default.update(grads, default.init(params), params, obj_fn=separable_objective)
    for k in SHAPES:
        np.testing.assert_allclose(u[k], np.sign(np.asarray(grads[k])), rtol=1e-12)
    paper = optix.scale_by_sophia(
        b1, b2, gamma=gamma, clip_threshold=1.0, refresh_first=True, bias_correction=False
    )
    u, _ = paper.update(grads, paper.init(params), params, obj_fn=separable_objective)
    for k in SHAPES:
        h = (1 - b2) * (2 * SEPARABLE_CURVATURE[k] + 1.2 * np.asarray(params[k]) ** 2)
        expected = np.clip((1 - b1) * np.asarray(grads[k]) / np.maximum(gamma * h, 1e-8), -1, 1)
        np.testing.assert_allclose(u[k], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="update_interval"):
        optix.sophia(1e-3, update_interval=0)
    with pytest.raises(ValueError, match="clip_threshold"):
        optix.sophia(1e-3, clip_threshold=0.0)
    with pytest.raises(TypeError, match="hessian_diagonal_fn"):
        optix.sophia(1e-3, hessian_diagonal_fn=lambda g: g)


def test_sophia_with_hutchinson_converges_on_an_ill_conditioned_quadratic():
    scales = jnp.array([1.0, 10.0, 100.0, 1000.0], jnp.float32)
    loss = lambda p: 0.5 * jnp.sum(scales * (p - 1.0) ** 2)  # noqa: E731
    tx = optix.sophia(0.05, weight_decay=0.0, gamma=0.1, update_interval=2)
    final, losses = train_scanned(tx, loss, jnp.zeros(4, jnp.float32), 400, obj_fn=loss)
    assert float(loss(final)) < 1e-4 * float(losses[0])
