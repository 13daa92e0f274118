"""Teacher-forced step-by-step comparison of optix against another implementation.

Runs in float64 (use the ``x64`` fixture) for ``N_STEPS`` steps on a pytree with a scalar, a
vector and a matrix leaf. Both sides are teacher-forced: at every step they get the same params
and the same gradient (seeded, magnitudes from 1e-3 to 30, some exact zeros and one all-zero
step), each keeps its own state, and every step's updates must agree leaf by leaf.

Tolerance ``RTOL = 1e-10`` with ``atol = atol_rel * max|update|`` per leaf: both sides evaluate
the same float64 formulas in a different order, which costs a few ulps per operation; a
convention mismatch (eps inside or outside a root, a bias correction a step off) is 1e-8 or more.
``theirs`` is any object with optax's ``init``/``update`` protocol (optax, or a NumPy
transcription wrapped the same way); it runs under JAX's standard dtype promotion.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

N_STEPS = 120
ZERO_STEP = 11  # one step with an all-zero gradient
SHAPES = {"scalar": (), "vector": (6,), "matrix": (3, 4)}
RTOL = 1e-10
ATOL_REL = 1e-13  # times the largest |update| of the leaf at that step; see the module docstring


def random_tree(rng: np.random.Generator, scale: float) -> dict[str, np.ndarray]:
    return {k: scale * rng.standard_normal(shape) for k, shape in SHAPES.items()}


def gradient_stream(seed: int) -> list[dict[str, np.ndarray]]:
    """``N_STEPS`` float64 gradient trees, magnitudes spread over 1e-3 .. 30, with exact zeros."""
    rng = np.random.default_rng(seed)
    grads = []
    for t in range(N_STEPS):
        g = random_tree(rng, float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0)))))
        g["vector"][rng.integers(0, 6)] = 0.0  # an exact zero somewhere, every step
        if t == ZERO_STEP:
            g = {k: np.zeros_like(v) for k, v in g.items()}
        grads.append(g)
    return grads


def params_stream(seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed + 1000)
    return [random_tree(rng, 2.0) for _ in range(N_STEPS)]


def assert_updates_close(
    ours, theirs, step: int, what: str, *, rtol: float = RTOL, atol_rel: float = ATOL_REL
) -> None:
    assert set(ours) == set(theirs)
    for key in ours:
        a = np.asarray(ours[key])
        b = np.asarray(theirs[key])
        assert a.dtype == np.float64, f"{what}: step {step} leaf {key} has dtype {a.dtype}"
        assert a.shape == b.shape
        atol = atol_rel * max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
        np.testing.assert_allclose(
            a, b, rtol=rtol, atol=atol, err_msg=f"{what}: step {step}, leaf {key!r}"
        )


def run_teacher_forced(
    ours: Any,
    theirs: Any,
    what: str,
    seed: int = 0,
    *,
    rtol: float = RTOL,
    atol_rel: float = ATOL_REL,
) -> None:
    """Run ``ours`` and ``theirs`` side by side, both jitted, and compare every step's updates."""
    grads = gradient_stream(seed)
    params = params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    p0 = as_jax(params[0])
    state_ours, state_theirs = ours.init(p0), theirs.init(p0)
    update_ours = jax.jit(ours.update)
    update_theirs = jax.jit(theirs.update)
    for t in range(N_STEPS):
        g, p = as_jax(grads[t]), as_jax(params[t])
        u_ours, state_ours = update_ours(g, state_ours, p)
        # optax is not written for strict dtype promotion; it gets JAX's default.
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, state_theirs = update_theirs(g, state_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, what, rtol=rtol, atol_rel=atol_rel)
