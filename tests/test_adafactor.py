"""Adafactor and SM3 against optax and against a NumPy transcription of SM3-II, step by step.

All comparisons are 120 teacher-forced float64 steps (``tests.reference``): both sides get the same
params and gradients each step (magnitudes 1e-3 .. 30, exact zeros, one all-zero step) and keep
their own state. Tolerance ``rtol=1e-10`` (see ``tests/reference.py``) unless a test says why not.

- Adafactor: optax computes the decay schedule ``1 - t^-0.8`` in float32 even under x64, so the
  exact comparison rebuilds ``optax.adafactor``'s chain from optax's own pieces with a float64
  ``decay_rate_fn``; ``optax.adafactor`` itself is checked at a tolerance derived from that float32
  rounding. Leaves are factored through ``min_dim_size_to_factor=3`` on the standard tree, and at
  the default 128 on (130, 140), (140, 130) and (2, 130, 129) leaves.
- SM3: optax 0.2.8's ``scale_by_sm3`` fails on scalar leaves (shown below), so the full tree is
  checked against a NumPy transcription of the paper's SM3-II algorithm box, and optax is checked
  on the leaves it runs on (vector, matrix, rank 3).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import (
    ATOL_REL,
    N_STEPS,
    RTOL,
    ZERO_STEP,
    assert_updates_close,
    run_teacher_forced,
)


def _streams(shapes: dict, seed: int, steps: int = N_STEPS):
    """Gradients and params for ``shapes``, built like ``tests.reference``'s streams."""
    rng = np.random.default_rng(seed)
    grads, params = [], []
    for t in range(steps):
        scale = float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0))))
        g = {k: scale * rng.standard_normal(s) for k, s in shapes.items()}
        for k, s in shapes.items():
            if len(s) >= 1:
                g[k].reshape(-1)[rng.integers(0, g[k].size)] = 0.0
        if t == ZERO_STEP:
            g = {k: np.zeros_like(v) for k, v in g.items()}
        grads.append(g)
        params.append({k: 2.0 * rng.standard_normal(s) for k, s in shapes.items()})
    return grads, params


def _run(
    ours,
    theirs,
    shapes,
    seed,
    what,
    *,
    jit_theirs=True,
    steps=N_STEPS,
    rtol=RTOL,
    atol_rel=ATOL_REL,
):
    """Teacher-forced comparison on arbitrary leaf shapes; ``theirs`` may be plain NumPy."""
    grads, params = _streams(shapes, seed, steps)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    state_ours, state_theirs = ours.init(as_jax(params[0])), theirs.init(params[0])
    update_ours = jax.jit(ours.update)
    update_theirs = jax.jit(theirs.update) if jit_theirs else theirs.update
    for t in range(steps):
        u_ours, state_ours = update_ours(as_jax(grads[t]), state_ours, as_jax(params[t]))
        with jax.numpy_dtype_promotion("standard"):
            g, p = (as_jax(grads[t]), as_jax(params[t])) if jit_theirs else (grads[t], params[t])
            u_theirs, state_theirs = update_theirs(g, state_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, what, rtol=rtol, atol_rel=atol_rel)


# ---------------------------------------------------------------------------------------------
# Adafactor
# ---------------------------------------------------------------------------------------------


def _decay_f64(step, exponent):
    return 1.0 - jnp.asarray(step + 1, jnp.float64) ** (-exponent)


def _optax_adafactor_f64(
    lr,
    min_dim=128,
    *,
    decay_rate=0.8,
    offset=0,
    mbps=True,
    clip=1.0,
    momentum=None,
    wd=None,
    eps=1e-30,
    factored=True,
):
    """``optax.adafactor``'s chain (optax/_src/alias.py), from optax's pieces, float64 decay."""
    parts = [
        optax.scale_by_factored_rms(
            factored, decay_rate, offset, min_dim, eps, decay_rate_fn=_decay_f64
        )
    ]
    if clip is not None:
        parts.append(optax.clip_by_block_rms(clip))
    parts.append(optax.scale_by_learning_rate(lr, flip_sign=False))
    if mbps:
        parts.append(optax.scale_by_param_block_rms())
    if momentum is not None:
        parts.append(optax.ema(momentum, debias=False, accumulator_dtype=jnp.float64))
    if wd is not None:
        parts.append(optax.add_decayed_weights(wd))
    parts.append(optax.scale(-1))
    return optax.chain(*parts)


ADAFACTOR_CASES = {
    "default_unfactored": (lambda: optix.adafactor(1e-2), lambda: _optax_adafactor_f64(1e-2)),
    "factored_matrix": (
        lambda: optix.adafactor(1e-2, min_dim_size_to_factor=3),
        lambda: _optax_adafactor_f64(1e-2, 3),
    ),
    "options": (
        lambda: optix.adafactor(
            0.05,
            min_dim_size_to_factor=3,
            decay_rate=0.6,
            decay_offset=-4,
            clipping_threshold=0.5,
            eps=1e-20,
        ),
        lambda: _optax_adafactor_f64(0.05, 3, decay_rate=0.6, offset=-4, clip=0.5, eps=1e-20),
    ),
    "no_clip_no_scale_not_factored": (
        lambda: optix.adafactor(
            0.05,
            min_dim_size_to_factor=3,
            clipping_threshold=None,
            multiply_by_parameter_scale=False,
            factored=False,
        ),
        lambda: _optax_adafactor_f64(0.05, 3, clip=None, mbps=False, factored=False),
    ),
    # optix multiplies weight_decay_rate by the learning rate (documented); optax does not:
    # optix's rate lambda equals optax's rate divided by the (constant) learning rate.
    "momentum_weight_decay": (
        lambda: optix.adafactor(
            1e-2, min_dim_size_to_factor=3, momentum=0.9, weight_decay_rate=0.5
        ),
        lambda: _optax_adafactor_f64(1e-2, 3, momentum=0.9, wd=0.5 * 1e-2),
    ),
}


@pytest.mark.parametrize("name", list(ADAFACTOR_CASES))
def test_adafactor_matches_optax_chain_step_by_step(name, x64):
    make_ours, make_theirs = ADAFACTOR_CASES[name]
    run_teacher_forced(make_ours(), make_theirs(), f"adafactor {name}")


def test_adafactor_matches_optax_adafactor_itself(x64):
    """The unmodified ``optax.adafactor``, at ``rtol=2e-6``: optax rounds ``beta_t = 1 - t^-0.8``
    to float32 (``_decay_rate_pow``), an absolute error up to 4.2e-8 and a relative error of
    ``1 - beta_t`` up to 1.3e-6 over these 120 steps (computed below). The second moment mixes
    gradients with these weights, and the update scales as its inverse square root, so it
    inherits at most about that relative error (observed: 3.1e-7). Convention mismatches are
    checked at 1e-10 above."""
    t = np.arange(1, N_STEPS + 1, dtype=np.float64)
    exact = t**-0.8
    rounded = (np.float32(1) - t.astype(np.float32) ** np.float32(-0.8)).astype(np.float64)
    assert np.max(np.abs((1 - rounded) - exact) / exact) < 2e-6
    for min_dim in (128, 3):
        run_teacher_forced(
            optix.adafactor(1e-2, min_dim_size_to_factor=min_dim),
            optax.adafactor(1e-2, min_dim_size_to_factor=min_dim),
            f"optax.adafactor min_dim={min_dim}",
            rtol=2e-6,
        )


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
    _run(
        optix.adafactor(1e-2, momentum=0.5),
        _optax_adafactor_f64(1e-2, momentum=0.5),
        BIG_SHAPES,
        7,
        "adafactor large leaves",
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


class Sm3Paper:
    """NumPy transcription of SM3-II (Anil, Gupta, Koren & Singer 2019, the algorithm box
    "SM3-II"), one accumulator ``mu'(r)`` per cover set ``S_r``. Per step, with all ``mu'_t(r)``
    started at 0:

        nu'_t(i) = min_{r: S_r contains i} mu'_{t-1}(r) + g_t(i)^2
        w_{t+1}(i) = w_t(i) - eta g_t(i) / sqrt(nu'_t(i))        (0/0 = 0)
        mu'_t(r) = max(mu'_t(r), nu'_t(i))   for every r with i in S_r

    The cover of a rank-p tensor is its co-dimension-1 slices ``S_(a, j) = {i : i_a = j}`` (the
    paper's choice for matrices and tensors); a scalar's cover is one set. As in optax (and the
    optimizer's momentum option), ``eps`` is added under the root and the step uses
    ``m_t = beta m_{t-1} + (1 - beta) g_t / sqrt(nu'_t + eps)``; ``beta = eps = 0`` is the box
    exactly. Written element by element, on purpose independent of optix's vectorised form.
    """

    def __init__(self, lr, beta, eps):
        self.lr, self.beta, self.eps = lr, beta, eps

    @staticmethod
    def cover(shape):
        if not shape:
            return [("all",)]
        return [(a, j) for a in range(len(shape)) for j in range(shape[a])]

    @staticmethod
    def contains(r, index):
        return r == ("all",) or index[r[0]] == r[1]

    def init(self, params):
        mu = {k: dict.fromkeys(self.cover(np.shape(p)), 0.0) for k, p in params.items()}
        return mu, {k: np.zeros(np.shape(p)) for k, p in params.items()}

    def update(self, grads, state, params=None):
        mu_prev, m = state
        mu_new, m_new, out = {}, {}, {}
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            acc = dict.fromkeys(mu_prev[k], 0.0)
            pre = np.zeros(g.shape)
            for index in itertools.product(*(range(n) for n in g.shape)):
                sets = [r for r in acc if self.contains(r, index)]
                nu = min(mu_prev[k][r] for r in sets) + g[index] ** 2
                pre[index] = g[index] / math.sqrt(nu + self.eps) if nu > 0 else 0.0
                for r in sets:
                    acc[r] = max(acc[r], nu)
            mu_new[k] = acc
            m_new[k] = self.beta * m[k] + (1 - self.beta) * pre
            out[k] = -self.lr * m_new[k]
        return out, (mu_new, m_new)


SM3_SHAPES = {"scalar": (), "vector": (6,), "matrix": (3, 4), "cube": (2, 3, 4)}


@pytest.mark.parametrize(("beta", "eps"), [(0.9, 1e-8), (0.0, 0.0)])
def test_sm3_matches_paper_transcription(beta, eps, x64):
    _run(
        optix.sm3(0.1, beta, eps=eps),
        Sm3Paper(0.1, beta, eps),
        SM3_SHAPES,
        11,
        f"sm3 vs SM3-II beta={beta}",
        jit_theirs=False,
    )


def test_sm3_matches_optax_where_optax_runs(x64):
    shapes = {"vector": (6,), "matrix": (3, 4), "cube": (2, 3, 4)}
    _run(optix.sm3(0.3, 0.5), optax.sm3(0.3, 0.5), shapes, 13, "sm3 vs optax, momentum 0.5")


def test_optax_sm3_fails_on_scalar_leaves_optix_does_not(x64):
    """Why the full tree is checked against the transcription: optax 0.2.8 keeps no accumulator
    for a rank-0 leaf and then indexes it (``v[0]`` on an empty list)."""
    params = {"s": jnp.asarray(1.0)}
    tx = optax.sm3(0.1)
    with pytest.raises(IndexError), jax.numpy_dtype_promotion("standard"):
        tx.update(params, tx.init(params), params)
    ours = optix.sm3(0.1, 0.0)
    u, state = ours.update({"s": jnp.asarray(2.0)}, ours.init(params))
    assert float(u["s"]) == pytest.approx(-0.1 * 2.0 / math.sqrt(4.0 + 1e-8), rel=1e-14)
    assert [a.shape for a in state[0].nu["s"]] == [()]


def test_sm3_schedule_and_dtypes():
    """A learning-rate schedule works (optax's sm3 takes a constant only); memory is per axis."""
    tx = optix.sm3(optix.schedules.cosine_decay(0.1, 10))
    params = {"w": jnp.ones((4, 5), jnp.bfloat16), "z": jnp.ones(3, jnp.complex64)}
    state = tx.init(params)
    assert [a.shape for a in state[0].nu["w"]] == [(4,), (5,)]
    assert state[0].nu["z"][0].dtype == jnp.float32
    grads = {"w": jnp.ones((4, 5), jnp.bfloat16), "z": jnp.full(3, 1j, jnp.complex64)}
    u, _ = jax.jit(tx.update)(grads, state)
    assert u["w"].dtype == jnp.bfloat16 and u["z"].dtype == jnp.complex64
    # first step, momentum 0.9: -lr * 0.1 * g / |g|
    np.testing.assert_allclose(np.asarray(u["z"]), -0.1 * 0.1 * 1j, rtol=1e-6)


def test_sm3_accumulators_of_low_precision_params_default_to_float32():
    """bf16 params get float32 accumulators and momentum unless a dtype is asked for; an integer
    or bool dtype is refused, naming the argument."""
    params = {"w": jnp.ones((4, 5), jnp.bfloat16), "s": jnp.ones((), jnp.bfloat16)}
    state = optix.sm3(0.1).init(params)[0]
    assert {a.dtype for a in jax.tree.leaves(state.nu)} == {jnp.dtype(jnp.float32)}
    assert {m.dtype for m in jax.tree.leaves(state.mu)} == {jnp.dtype(jnp.float32)}
    asked = optix.sm3(0.1, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16).init(params)[0]
    assert {a.dtype for a in jax.tree.leaves((asked.nu, asked.mu))} == {jnp.dtype(jnp.bfloat16)}
    grads = jax.tree.map(jnp.ones_like, params)
    u, _ = jax.jit(optix.sm3(0.1).update)(grads, optix.sm3(0.1).init(params))
    assert {x.dtype for x in jax.tree.leaves(u)} == {jnp.dtype(jnp.bfloat16)}
    for name in ("mu_dtype", "nu_dtype"):
        for bad in (jnp.int32, jnp.bool_):
            with pytest.raises(TypeError, match=name):
                optix.sm3(0.1, **{name: bad})


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (2, 0, 3), (0,)])
def test_sm3_leaves_with_no_elements(shape):
    """A leaf with an axis of length 0 gets a zero-size update; its accumulators of the other
    axes stay 0 (the maximum over an empty slice), and the other leaves are unaffected."""
    params = {"e": jnp.ones(shape), "w": jnp.ones((2, 3))}
    tx = optix.sm3(0.1)
    state = tx.init(params)
    grads = {"e": jnp.ones(shape), "w": jnp.full((2, 3), 2.0)}
    u, new = jax.jit(tx.update)(grads, state)
    assert u["e"].shape == shape and u["e"].dtype == jnp.float32
    assert all(float(jnp.sum(jnp.abs(a))) == 0.0 for a in new[0].nu["e"])
    alone = tx.update({"w": grads["w"]}, tx.init({"w": params["w"]}))[0]
    np.testing.assert_array_equal(u["w"], alone["w"])
    assert jax.tree.structure(new) == jax.tree.structure(state)
