"""Adafactor: optax's float32 decay, large leaves, the paper's factored formula, dtypes, checks.

The step-by-step comparisons are entries of ``tests/references.py``: 120 teacher-forced float64
steps (both sides get the same params and gradients each step, magnitudes 1e-3 .. 30, exact zeros,
one all-zero step, each keeping its own state) at ``rtol=1e-10``. optax computes the decay
schedule ``1 - t^-0.8`` in float32 even under x64, so the exact comparison rebuilds
``optax.adafactor``'s chain from optax's own pieces with a float64 ``decay_rate_fn``
(``tests/transcriptions.py``); ``optax.adafactor`` itself is checked at a tolerance derived from
that float32 rounding (below). Leaves are factored through ``min_dim_size_to_factor=3`` on the
standard tree there, and at the default 128 on (130, 140), (140, 130) and (2, 130, 129) leaves
here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.reference import N_STEPS
from tests.reference import run_on_shapes
from tests.transcriptions import optax_adafactor_f64

# ---------------------------------------------------------------------------------------------
# Adafactor
# ---------------------------------------------------------------------------------------------


def test_optax_adafactor_float32_decay_is_within_its_reference_tolerance():
    """``optax.adafactor`` itself is checked at ``rtol=2e-6`` (``tests/references.py``): optax
    rounds ``beta_t = 1 - t^-0.8`` to float32 (``_decay_rate_pow``), an absolute error up to
    4.2e-8 and a relative error of ``1 - beta_t`` up to 1.3e-6 over 120 steps (computed here). The
    second moment mixes gradients with these weights, and the update scales as its inverse square
    root, so it inherits at most about that relative error (observed: 3.1e-7). Convention
    mismatches are checked at 1e-10 against optax's chain rebuilt with a float64 decay."""
    t = np.arange(1, N_STEPS + 1, dtype=np.float64)
    exact = t**-0.8
    rounded = (np.float32(1) - t.astype(np.float32) ** np.float32(-0.8)).astype(np.float64)
    assert np.max(np.abs((1 - rounded) - exact) / exact) < 2e-6


BIG_SHAPES = {"wide": (130, 140), "tall": (140, 130), "cube": (2, 130, 129), "vec": (6,), "s": ()}


def test_adafactor_factors_large_leaves_like_optax(x64):
    """Default ``min_dim_size_to_factor=128``: the three large leaves are factored over their two
    largest axes (the rank-3 one keeps its leading axis), small ones are not. 40 steps here (the
    factored formulas get their 120 steps above through ``min_dim_size_to_factor=3``)."""
    params = {k: jnp.zeros(s) for k, s in BIG_SHAPES.items()}
    state = optix.adafactor(1e-2).init(params)[0]
    assert state.v_row["wide"].shape == (130,) and state.v_col["wide"].shape == (140,)
    assert state.v_row["tall"].shape == (130,) and state.v_col["tall"].shape == (140,)
    assert state.v_row["cube"].shape == (2, 129) and state.v_col["cube"].shape == (2, 130)
    assert state.v["vec"].shape == (6,) and state.v["s"].shape == ()
    run_on_shapes(
        optix.adafactor(1e-2, momentum=0.5),
        optax_adafactor_f64(1e-2, momentum=0.5),
        "adafactor large leaves",
        7,
        shapes=BIG_SHAPES,
        steps=40,
    )


def test_adafactor_factored_update_is_the_paper_formula(x64):
    """One step on a (130, 140) leaf without clipping or param scale: ``u = g / sqrt(V)`` with
    ``V = R C / mean(R)``, R and C the row and column means of ``g^2 + eps1`` (Shazeer & Stern
    2018, Algorithm 4; ``beta_1 = 1 - 1^-0.8 = 0``)."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal((130, 140))
    tx = optix.adafactor(1.0, clipping_threshold=None, multiply_by_parameter_scale=False)
    u, _ = tx.update({"w": jnp.asarray(g)}, tx.init({"w": jnp.zeros((130, 140))}))
    sq = g**2 + 1e-30
    r, c = sq.mean(axis=1), sq.mean(axis=0)
    v = np.outer(r, c) / r.mean()
    np.testing.assert_allclose(u["w"], -g / np.sqrt(v), rtol=1e-12)


def test_adafactor_keeps_dtypes_and_accepts_complex():
    params = {"w": jnp.ones((4, 5), jnp.bfloat16), "z": jnp.ones(3, jnp.complex64)}
    tx = optix.adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9)
    state = tx.init(params)
    assert state[0].v_row["w"].dtype == jnp.float32  # at least float32 unless asked
    assert state[0].v["z"].dtype == jnp.float32  # real statistics for complex params
    asked = optix.adafactor(1e-2, min_dim_size_to_factor=2, nu_dtype=jnp.bfloat16).init(params)
    assert asked[0].v_row["w"].dtype == jnp.bfloat16
    grads = {"w": jnp.full((4, 5), 0.5, jnp.bfloat16), "z": jnp.full(3, 1 + 1j, jnp.complex64)}
    u, _ = jax.jit(tx.update)(grads, state, params)
    assert u["w"].dtype == jnp.bfloat16 and u["z"].dtype == jnp.complex64


def test_adafactor_invalid_arguments_raise():
    with pytest.raises(ValueError, match="decay_rate"):
        optix.adafactor(1e-2, decay_rate=-0.8)
    with pytest.raises(ValueError, match="min_dim_size_to_factor"):
        optix.adafactor(1e-2, min_dim_size_to_factor=0)
    with pytest.raises(ValueError, match="momentum"):
        optix.adafactor(1e-2, momentum=1.0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx = optix.adafactor(1e-2)
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), None)


# ---------------------------------------------------------------------------------------------
# SM3
# ---------------------------------------------------------------------------------------------
