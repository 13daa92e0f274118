"""LAMB, LARS, NovoGrad, Fromage and ``scale_by_trust_ratio`` against optax, step by step.

Comparisons use ``tests.reference.run_teacher_forced``: 120 float64 steps, teacher-forced, on a
pytree with a scalar, a (6,) vector and a (3, 4) matrix, with ``rtol=1e-10`` (see that module for
why this tolerance separates rounding from a convention mismatch). optax 0.2.8 implements all four
optimizers; optix matches each with the same float64 formulas, so no tolerance is loosened.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import SHAPES, gradient_stream, params_stream, run_teacher_forced


def _schedule():
    return optix.schedules.cosine_decay(0.05, 80, alpha=0.1)


def _optax_schedule():
    return optax.cosine_decay_schedule(0.05, 80, alpha=0.1)


def _mask(params):
    return {k: v.ndim >= 1 for k, v in params.items()}


_LARS_OPTIONS = dict(
    weight_decay=1e-3,
    weight_decay_mask=_mask,
    trust_coefficient=0.02,
    eps=1e-3,
    trust_ratio_mask=_mask,
    momentum=0.8,
    nesterov=True,
)

CASES = {
    "lamb": (lambda: optix.lamb(1e-2), lambda: optax.lamb(1e-2)),
    "lamb_wd_eps_root": (
        lambda: optix.lamb(3e-3, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, weight_decay=0.05),
        lambda: optax.lamb(3e-3, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, weight_decay=0.05),
    ),
    "lamb_mask_schedule": (
        lambda: optix.lamb(_schedule(), weight_decay=0.1, mask=_mask),
        lambda: optax.lamb(_optax_schedule(), weight_decay=0.1, mask=_mask),
    ),
    "lars": (lambda: optix.lars(0.1), lambda: optax.lars(0.1)),
    "lars_all_options": (
        lambda: optix.lars(0.2, **_LARS_OPTIONS),
        lambda: optax.lars(0.2, **_LARS_OPTIONS),
    ),
    # The momentum accumulates lr-scaled steps (paper, optax), so schedules agree too.
    "lars_schedule": (
        lambda: optix.lars(_schedule(), weight_decay=1e-3, trust_coefficient=0.05),
        lambda: optax.lars(_optax_schedule(), weight_decay=1e-3, trust_coefficient=0.05),
    ),
    "novograd": (lambda: optix.novograd(1e-2), lambda: optax.novograd(1e-2)),
    "novograd_options": (
        lambda: optix.novograd(
            _schedule(), b1=0.8, b2=0.5, eps=1e-4, eps_root=1e-6, weight_decay=0.01
        ),
        lambda: optax.novograd(
            _optax_schedule(), b1=0.8, b2=0.5, eps=1e-4, eps_root=1e-6, weight_decay=0.01
        ),
    ),
    "fromage": (lambda: optix.fromage(1e-2), lambda: optax.fromage(1e-2)),
    "fromage_schedule_min_norm": (
        lambda: optix.fromage(_schedule(), min_norm=0.5),
        lambda: optax.fromage(_optax_schedule(), min_norm=0.5),
    ),
    "scale_by_trust_ratio_options": (
        lambda: optix.scale_by_trust_ratio(min_norm=0.3, trust_coefficient=0.01, eps=1e-2),
        lambda: optax.scale_by_trust_ratio(min_norm=0.3, trust_coefficient=0.01, eps=1e-2),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_optax_step_by_step(name, x64):
    make_ours, make_theirs = CASES[name]
    run_teacher_forced(make_ours(), make_theirs(), name)


def _np_norm(x):
    return float(np.sqrt(np.sum(np.asarray(x, np.float64) ** 2)))


def test_trust_ratio_zero_norm_conventions(x64):
    """A zero param norm or a zero update norm leaves the update unchanged (ratio 1); with a
    ``min_norm`` floor neither norm is zero and the floored ratio applies."""
    tx = optix.scale_by_trust_ratio()
    params = {"zero_p": jnp.zeros(3), "zero_u": jnp.ones(3), "both": jnp.array([3.0, 4.0, 0.0])}
    grads = {
        "zero_p": jnp.array([1.0, 2.0, 2.0]),
        "zero_u": jnp.zeros(3),
        "both": jnp.array([0.0, 0.0, 2.0]),
    }
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_array_equal(out["zero_p"], grads["zero_p"])
    np.testing.assert_array_equal(out["zero_u"], 0.0)
    np.testing.assert_allclose(out["both"], [0.0, 0.0, 5.0], rtol=1e-15)

    floored = optix.scale_by_trust_ratio(min_norm=0.5)
    out, _ = floored.update(grads, floored.init(params), params)
    # zero params: ratio 0.5 / ||g|| = 0.5 / 3
    np.testing.assert_allclose(out["zero_p"], np.array([1.0, 2.0, 2.0]) * 0.5 / 3.0, rtol=1e-15)


def test_trust_ratio_is_per_leaf_not_global(x64):
    """Each leaf's factor uses that leaf's norms only: rescaling one leaf's gradient leaves the
    other leaves' LAMB updates unchanged, and the result is the per-leaf formula."""
    tx = optix.lamb(0.1)
    p = {k: jnp.asarray(v) for k, v in params_stream(4)[0].items()}
    g = {k: jnp.asarray(v) for k, v in gradient_stream(4)[0].items()}
    update = jax.jit(tx.update)
    u1, _ = update(g, tx.init(p), p)
    g2 = dict(g, matrix=1e3 * g["matrix"])
    u2, _ = update(g2, tx.init(p), p)
    for k in ("scalar", "vector"):
        np.testing.assert_array_equal(u1[k], u2[k])
    for k in SHAPES:
        # first Adam step: m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps) elementwise
        r = np.asarray(g[k]) / (np.abs(np.asarray(g[k])) + 1e-6)
        want = -0.1 * _np_norm(p[k]) / _np_norm(r) * r
        np.testing.assert_allclose(u1[k], want, rtol=1e-12)


def test_fromage_step_is_the_paper_formula(x64):
    """theta_new = (theta - eta ||theta|| / ||g|| g) / sqrt(1 + eta^2), leaf by leaf."""
    eta = 0.3
    tx = optix.fromage(eta)
    p = {k: jnp.asarray(v) for k, v in params_stream(5)[0].items()}
    g = {k: jnp.asarray(v) for k, v in gradient_stream(5)[0].items()}
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    new = optix.apply_updates(p, u)
    for k in SHAPES:
        pk, gk = np.asarray(p[k]), np.asarray(g[k])
        want = (pk - eta * _np_norm(pk) / _np_norm(gk) * gk) / np.sqrt(1 + eta**2)
        np.testing.assert_allclose(new[k], want, rtol=1e-13, atol=1e-15)


def test_fromage_float32_keeps_precision_of_the_shrink():
    """In float32 the shrink ``(1/sqrt(1+eta^2) - 1) theta`` is formed without cancellation: the
    float32 step agrees with the float64 formula to float32 rounding, even for small ``eta``."""
    eta = 1e-3
    rng = np.random.default_rng(8)
    p64, g64 = rng.standard_normal(50), rng.standard_normal(50)
    tx = optix.fromage(eta)
    p, g = jnp.asarray(p64, jnp.float32), jnp.asarray(g64, jnp.float32)
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    p64, g64 = np.asarray(p, np.float64), np.asarray(g, np.float64)
    root = np.sqrt(1 + eta**2)
    want = -eta / root * _np_norm(p64) / _np_norm(g64) * g64 - (1 - 1 / root) * p64
    np.testing.assert_allclose(np.asarray(u, np.float64), want, rtol=1e-5, atol=1e-6 * eta)


def test_novograd_second_moment_is_one_scalar_per_leaf(x64):
    params = {"w": jnp.ones((3, 4), jnp.bfloat16), "b": jnp.zeros(4, jnp.bfloat16)}
    state = optix.novograd(1e-2).init(params)
    nu = state[0].nu
    assert nu["w"].shape == () and nu["b"].shape == ()
    assert nu["w"].dtype == jnp.float64  # at least the hyperparameter precision
    # accumulators default to at least float32 (the compute dtype: float64 here, under x64)
    assert state[0].mu["w"].dtype == jnp.float64


def test_lars_trust_ratio_mask_leaves_plain_sgd_momentum(x64):
    """Leaves outside ``trust_ratio_mask`` take heavy-ball SGD steps on g + wd * p."""
    lr, wd, mu = 0.1, 0.01, 0.9
    mask = {"scalar": False, "vector": False, "matrix": True}
    tx = optix.lars(lr, weight_decay=wd, trust_ratio_mask=mask, momentum=mu)
    grads, params = gradient_stream(6), params_stream(6)
    state = tx.init({k: jnp.asarray(v) for k, v in params[0].items()})
    update = jax.jit(tx.update)
    buf = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t in range(20):
        g = {k: jnp.asarray(v) for k, v in grads[t].items()}
        p = {k: jnp.asarray(v) for k, v in params[t].items()}
        u, state = update(g, state, p)
        for k in ("scalar", "vector"):
            buf[k] = mu * buf[k] + lr * (grads[t][k] + wd * params[t][k])
            np.testing.assert_allclose(u[k], -buf[k], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.lamb(1e-2),
        lambda: optix.lars(1e-2),
        lambda: optix.novograd(1e-2),
        lambda: optix.fromage(1e-2),
        lambda: optix.scale_by_trust_ratio(),
    ],
)
def test_needs_params_and_rejects_bad_hyperparameters(make):
    tx = make()
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(params, tx.init(params), None)


def test_invalid_hyperparameters_raise():
    with pytest.raises(ValueError, match="trust_coefficient"):
        optix.scale_by_trust_ratio(trust_coefficient=-1.0)
    with pytest.raises(ValueError, match="min_norm"):
        optix.fromage(0.1, min_norm=-1.0)
    with pytest.raises(ValueError, match="b2"):
        optix.novograd(0.1, b2=1.0)
    with pytest.raises(ValueError, match="momentum"):
        optix.lars(0.1, momentum=1.5)
    state = optix.lamb(0.1).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="trust_coefficient"):
        optix.set_hyperparams(state, trust_coefficient=-0.5)
