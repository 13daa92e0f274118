"""optix against optax where the two libraries share the math, and gradient noise checked exactly.

Step-by-step comparisons run in float64 (the ``x64`` fixture) for ``N_STEPS`` steps on a pytree
with a scalar, a vector and a matrix leaf. Both optimizers are teacher-forced: at every step they
get the same params and the same gradient (seeded, with magnitudes from 1e-3 to 30, some exact
zeros and one all-zero step), each keeps its own state, and every step's updates must agree leaf
by leaf. Both updates are jitted.

Tolerance: ``rtol=1e-10`` with ``atol=1e-13 * max|update|`` per leaf. Both libraries evaluate the
same float64 formulas (machine epsilon 2.2e-16) in a different order (``t / n * c`` against
``t * (c / n)``, ``rsqrt`` against ``1 / sqrt``, ...), which costs a few ulps per operation; the
moments accumulate such differences over the steps without amplifying them. A convention mismatch
(eps inside or outside a root or a max, a bias correction a step off, a schedule read at the wrong
count) is a relative error of 1e-8 or more, two orders of magnitude above the tolerance even for
``eps = 1e-8``. The ``atol`` only covers elements that are sums cancelling to nearly zero.

Noise (``add_noise``, ``noisy_sgd``) is random, so it is checked two ways: exactly against its
documented construction (``optix.noise_key``) in float32, and statistically against optax.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import (
    N_STEPS,
    SHAPES,
    assert_updates_close,
    gradient_stream,
    run_teacher_forced,
)


# The learning-rate schedule that scale_by_schedule is checked with: the same callable for both.
def _shared_schedule():
    return optix.schedules.join(
        [optix.schedules.linear(0.1, 1.0, 10), optix.schedules.exponential_decay(1.0, 15, 0.5)],
        [10],
    )


def _decay_mask(params):
    return {k: v.ndim >= 1 for k, v in params.items()}


# name -> (optix factory, optax factory); both built inside the test, with x64 on.
CASES: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "clip_by_global_norm": (
        lambda: optix.clip_by_global_norm(2.0),
        lambda: optax.clip_by_global_norm(2.0),
    ),
    "clip": (lambda: optix.clip(0.5), lambda: optax.clip(0.5)),
    "scale": (lambda: optix.scale(-0.3), lambda: optax.scale(-0.3)),
    "scale_by_schedule": (
        lambda: optix.scale_by_schedule(_shared_schedule()),
        lambda: optax.scale_by_schedule(_shared_schedule()),
    ),
    "add_decayed_weights": (
        lambda: optix.add_decayed_weights(0.05),
        lambda: optax.add_decayed_weights(0.05),
    ),
    "add_decayed_weights_mask_tree": (
        lambda: optix.add_decayed_weights(
            0.05, mask={"scalar": False, "vector": True, "matrix": True}
        ),
        lambda: optax.add_decayed_weights(
            0.05, mask={"scalar": False, "vector": True, "matrix": True}
        ),
    ),
    "add_decayed_weights_mask_fn": (
        lambda: optix.add_decayed_weights(0.05, mask=_decay_mask),
        lambda: optax.add_decayed_weights(0.05, mask=_decay_mask),
    ),
    "sgd": (lambda: optix.sgd(0.1), lambda: optax.sgd(0.1)),
    "sgd_schedule": (
        lambda: optix.sgd(optix.schedules.cosine_decay(0.2, 80, alpha=0.05)),
        lambda: optax.sgd(optax.cosine_decay_schedule(0.2, 80, alpha=0.05)),
    ),
    "adam": (lambda: optix.adam(1e-2), lambda: optax.adam(1e-2)),
    "adam_betas_eps": (
        lambda: optix.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6),
        lambda: optax.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6),
    ),
    "rmsprop_eps_in_sqrt": (
        lambda: optix.rmsprop(1e-2, decay=0.9, eps=1e-8, eps_in_sqrt=True),
        lambda: optax.rmsprop(1e-2, decay=0.9, eps=1e-8),
    ),
    "rmsprop_centered_eps_in_sqrt": (
        lambda: optix.rmsprop(1e-2, decay=0.95, eps=1e-6, centered=True, eps_in_sqrt=True),
        lambda: optax.rmsprop(1e-2, decay=0.95, eps=1e-6, centered=True),
    ),
    # optax's adamax puts eps inside the max, ``max(|g| + eps, b2 * u)`` (optax/tree_utils
    # tree_update_infinity_moment), as torch does: that is optix's default ``eps_in_max=True``.
    "adamax": (lambda: optix.adamax(2e-3), lambda: optax.adamax(2e-3)),
    "adamax_betas_eps": (
        lambda: optix.adamax(1e-2, b1=0.85, b2=0.99, eps=1e-3),
        lambda: optax.adamax(1e-2, b1=0.85, b2=0.99, eps=1e-3),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_optax_step_by_step(name, x64):
    make_ours, make_theirs = CASES[name]
    run_teacher_forced(make_ours(), make_theirs(), name)


def test_scale_by_sign_is_sign(x64):
    tx = optix.scale_by_sign()
    grads = gradient_stream(3)
    update = jax.jit(tx.update)
    state = tx.init({k: jnp.zeros(s, jnp.float64) for k, s in SHAPES.items()})
    for t, g_np in enumerate(grads):
        g = {k: jnp.asarray(v, jnp.float64) for k, v in g_np.items()}
        u, state = update(g, state)
        for k in SHAPES:
            assert u[k].dtype == jnp.float64
            np.testing.assert_array_equal(u[k], np.sign(g_np[k]), err_msg=f"step {t} leaf {k}")
            np.testing.assert_array_equal(u[k], jnp.sign(g[k]), err_msg=f"step {t} leaf {k}")


def test_adamax_eps_outside_max_matches_transcription(x64):
    """``eps_in_max=False``: ``u_inf = max(b2 * u_inf, |g|)`` and ``m_hat / (u_inf + eps)``
    (the convention optix's docstring attributes to optax; optax's adamax is the default one)."""
    lr, b1, b2, eps = 1e-2, 0.85, 0.99, 1e-3
    tx = optix.adamax(lr, b1=b1, b2=b2, eps=eps, eps_in_max=False)
    grads = gradient_stream(5)
    state = tx.init({k: jnp.zeros(s, jnp.float64) for k, s in SHAPES.items()})
    update = jax.jit(tx.update)
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    u_inf = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t, g_np in enumerate(grads, start=1):
        u, state = update({k: jnp.asarray(v, jnp.float64) for k, v in g_np.items()}, state)
        want = {}
        for k, g in g_np.items():
            m[k] = b1 * m[k] + (1 - b1) * g
            u_inf[k] = np.maximum(b2 * u_inf[k], np.abs(g))
            want[k] = -lr * (m[k] / (1 - b1**t)) / (u_inf[k] + eps)
        assert_updates_close(u, want, t, "adamax(eps_in_max=False)")


# ---------------------------------------------------------------------------------------------
# clip_by_global_norm edge cases.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("max_norm", [1.0, 0.0])
def test_clip_by_global_norm_all_zero_gradient_is_zero(dtype, max_norm):
    tx = optix.clip_by_global_norm(max_norm)
    zeros = {k: jnp.zeros(s, dtype) for k, s in SHAPES.items()}
    out, _ = jax.jit(tx.update)(zeros, tx.init(zeros))
    for k in SHAPES:
        assert out[k].dtype == dtype
        got = np.asarray(out[k]).astype(np.float32)
        assert not np.any(np.isnan(got)), k
        np.testing.assert_array_equal(got, 0.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_clip_by_global_norm_below_max_norm_is_unchanged_exactly(dtype, x64):
    rng = np.random.default_rng(7)
    tx = optix.clip_by_global_norm(10.0)
    update = jax.jit(tx.update)
    for scale in (1e-30, 1e-6, 0.1, 1.0, 1.5):  # norms far below up to just below 10
        g = {k: jnp.asarray(scale * rng.standard_normal(s), dtype) for k, s in SHAPES.items()}
        out, _ = update(g, tx.init(g))
        for k in SHAPES:
            assert out[k].dtype == dtype
            np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(g[k]), err_msg=f"{scale}")
    # A norm exactly equal to max_norm is not clipped either: 3-4-5.
    g = {"a": jnp.asarray([3.0, 4.0], dtype)}
    out, _ = optix.clip_by_global_norm(5.0).update(g, optix.clip_by_global_norm(5.0).init(g))
    np.testing.assert_array_equal(np.asarray(out["a"]), np.asarray(g["a"]))


def test_clip_by_global_norm_above_max_norm_has_norm_max_norm(x64):
    g = {k: jnp.asarray(3.0 * np.ones(s), jnp.float64) for k, s in SHAPES.items()}
    tx = optix.clip_by_global_norm(0.5)
    out, _ = jax.jit(tx.update)(g, tx.init(g))
    norm = math.sqrt(sum(float(jnp.sum(x**2)) for x in out.values()))
    assert norm == pytest.approx(0.5, rel=1e-14)


# ---------------------------------------------------------------------------------------------
# Gradient noise: add_noise / noisy_sgd.
# ---------------------------------------------------------------------------------------------

# nested, so flattening order matters; "b"'s vector and "v" share a shape, apart in that order
NOISE_SHAPES = {"w": (4, 3), "b": [(5,), ()], "a": (2, 2, 2), "v": (5,)}


def _noise_tree(rng: np.random.Generator) -> object:
    return {
        "w": rng.standard_normal((4, 3)).astype(np.float32),
        "b": [rng.standard_normal(5).astype(np.float32), np.float32(rng.standard_normal())],
        "a": rng.standard_normal((2, 2, 2)).astype(np.float32),
        "v": rng.standard_normal(5).astype(np.float32),
    }


@pytest.mark.parametrize(("eta", "gamma", "seed"), [(0.01, 0.55, 0), (0.3, 1.0, 1234)])
def test_noisy_sgd_exact_transcription(eta, gamma, seed):
    """``update_t = -lr * (g_t + sqrt(eta / (1 + t)**gamma) * n_t)``, with ``n_t`` for leaf ``i``
    (in ``jax.tree`` flattening order) drawn as ``normal(noise_key(PRNGKey(seed), t, i))``.

    Tolerance: optix forms the float32 sum ``g + std * n`` and scales it in float32; the float64
    transcription differs by a few float32 ulps of ``|g| + std * |n|``: ``rtol=1e-6`` and an
    ``atol`` of 1e-6 * lr for sums that cancel.
    """
    lr = 0.1
    tx = optix.noisy_sgd(lr, eta=eta, gamma=gamma, seed=seed)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(jnp.asarray, _noise_tree(rng))
    state = tx.init(params)
    update = jax.jit(tx.update)
    key = jax.random.PRNGKey(seed)
    shapes = [np.shape(g) for g in jax.tree.leaves(_noise_tree(rng))]

    @jax.jit
    def expected_noise(t):  # one compile; the draws are the documented ones
        return [
            jax.random.normal(optix.noise_key(key, t, i), s, jnp.float32)
            for i, s in enumerate(shapes)
        ]

    for t in range(N_STEPS):
        g_np = _noise_tree(rng)
        leaves_np, treedef = jax.tree.flatten(g_np)
        updates, state = update(jax.tree.map(jnp.asarray, g_np), state, params)
        got_leaves, got_def = jax.tree.flatten(updates)
        assert got_def == treedef
        std = math.sqrt(eta / (1 + t) ** gamma)
        noises = expected_noise(t)
        for i, (g, got, noise) in enumerate(zip(leaves_np, got_leaves, noises, strict=True)):
            want = -lr * (g.astype(np.float64) + std * np.asarray(noise, np.float64))
            assert got.dtype == jnp.float32 and got.shape == np.shape(g)
            np.testing.assert_allclose(
                np.asarray(got, np.float64),
                want,
                rtol=1e-6,
                atol=1e-6 * lr,
                err_msg=f"t={t} leaf {i}",
            )
    # The noise under jit is the noise drawn eagerly from the same key.
    eager = jax.random.normal(optix.noise_key(key, 5, 2), shapes[2], jnp.float32)
    np.testing.assert_array_equal(eager, expected_noise(jnp.int32(5))[2])


def test_add_noise_bf16_leaf_draws_float32_noise():
    """A bf16 leaf gets the float32 noise of its key, added in float32 and rounded once."""
    eta, gamma, seed = 0.5, 0.55, 3
    tx = optix.add_noise(eta, gamma, seed)
    g = jnp.ones((64,), jnp.bfloat16)
    state = tx.init(g)
    update = jax.jit(tx.update)
    key = jax.random.PRNGKey(seed)
    for t in range(3):
        out, state = update(g, state)
        assert out.dtype == jnp.bfloat16
        n = jax.random.normal(optix.noise_key(key, t, 0), (64,), jnp.float32)
        want = np.asarray(1.0 + np.float32(math.sqrt(eta / (1 + t) ** gamma)) * np.asarray(n))
        np.testing.assert_allclose(
            np.asarray(out).astype(np.float32),
            want.astype(jnp.bfloat16).astype(np.float32),
            rtol=2**-7,
        )


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


def _noise_two_leaves(seed, steps: int = 3) -> list[list[np.ndarray]]:
    tx = optix.add_noise(0.1, 0.55, seed)
    zero = [jnp.zeros((2000,), jnp.float32), jnp.zeros((2000,), jnp.float32)]
    state = tx.init(zero)
    out = []
    for _ in range(steps):
        u, state = tx.update(zero, state)
        out.append([np.asarray(x) for x in u])
    return out


def test_noise_reproducible_from_seed():
    a, b = _noise_two_leaves(17), _noise_two_leaves(17)
    for step_a, step_b in zip(a, b, strict=True):
        for x, y in zip(step_a, step_b, strict=True):
            np.testing.assert_array_equal(x, y)
    # An int seed, its raw PRNGKey and its typed key are the same seed.
    for same in (jax.random.PRNGKey(17), jax.random.key(17)):
        for step_a, step_c in zip(a, _noise_two_leaves(same), strict=True):
            for x, y in zip(step_a, step_c, strict=True):
                np.testing.assert_array_equal(x, y)


def test_noise_differs_across_seeds_leaves_and_steps():
    a, c = _noise_two_leaves(17), _noise_two_leaves(18)
    bound = 5 / math.sqrt(2000)  # |correlation| of independent normal samples, five sigma
    for t in range(3):
        for leaf in range(2):
            assert not np.array_equal(a[t][leaf], c[t][leaf])
            assert abs(np.corrcoef(a[t][leaf], c[t][leaf])[0, 1]) < bound
        assert abs(np.corrcoef(a[t][0], a[t][1])[0, 1]) < bound  # leaves of one step
    assert abs(np.corrcoef(a[0][0], a[1][0])[0, 1]) < bound  # one leaf, two steps
