"""clip_by_block_rms and adaptive_grad_clip against optax, teacher-forced in float64.

Both transforms are stateless apart from their hyperparameters, so at every one of ``N_STEPS``
steps optix and optax get the same float64 gradient (magnitudes spread over 1e-3 .. 30, exact
zeros, one all-zero step) and, for AGC, the same params (some units exactly zero, so ``eps``
engages), and their updates must agree leaf by leaf on a tree with a scalar, a vector, a matrix, a
rank-3 and a rank-4 leaf, a rank-5 one and a ``(1, 5)`` one (a vector under the unit convention).

Tolerance: ``rtol=1e-10``, ``atol=1e-13 * max|update|``. Each update is one scale factor times
the gradient, computed by the same float64 formula in a different order (``c / rms`` against
``1 / (rms / c)``): a few ulps (1e-15). A wrong unit (axis) or a clip threshold off by a factor
changes the factor by orders of magnitude more.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix.transforms._blockclip import AdaptiveGradClipState
from optix.transforms._blockclip import ClipByBlockRmsState
from optix.transforms._blockclip import adaptive_grad_clip
from optix.transforms._blockclip import clip_by_block_rms

N_STEPS = 120
ZERO_STEP = 7
SHAPES = {
    "scalar": (),
    "vector": (6,),
    "matrix": (3, 4),
    "heads": (2, 3, 4),
    "conv": (3, 3, 2, 4),
    "conv3d": (2, 2, 2, 3, 4),
    "row": (1, 5),
}
RTOL, ATOL_REL = 1e-10, 1e-13


def _stream(seed: int, complex_: bool = False):
    """(grads, params) lists of float64 (or complex128) trees."""
    rng = np.random.default_rng(seed)

    def draw(shape, scale):
        x = scale * rng.standard_normal(shape)
        if complex_:
            x = x + 1j * scale * rng.standard_normal(shape)
        return x

    grads, params = [], []
    for t in range(N_STEPS):
        g = {
            k: draw(s, math.exp(rng.uniform(math.log(1e-3), math.log(30.0))))
            for k, s in SHAPES.items()
        }
        g["vector"][rng.integers(0, 6)] = 0.0
        if t == ZERO_STEP:
            g = {k: np.zeros_like(v) for k, v in g.items()}
        p = {
            k: draw(s, math.exp(rng.uniform(math.log(0.05), math.log(5.0))))
            for k, s in SHAPES.items()
        }
        p["matrix"][:, rng.integers(0, 4)] = 0.0  # a zero unit: max_norm = clipping * eps
        p["conv"][..., rng.integers(0, 4)] = 0.0
        if t % 10 == 3:
            p["vector"] = np.zeros_like(p["vector"])
        grads.append(g)
        params.append(p)
    return grads, params


def _as_jax(tree, dtype):
    return {k: jnp.asarray(v, dtype) for k, v in tree.items()}


def _teacher_forced(ours, theirs, complex_: bool = False, seed: int = 0) -> int:
    dtype = jnp.complex128 if complex_ else jnp.float64
    grads, params = _stream(seed, complex_)
    p0 = _as_jax(params[0], dtype)
    s_ours, s_theirs = ours.init(p0), theirs.init(p0)
    up_ours, up_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    n_clipped = 0
    for t in range(N_STEPS):
        g, p = _as_jax(grads[t], dtype), _as_jax(params[t], dtype)
        u_ours, s_ours = up_ours(g, s_ours, p)
        with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict promotion
            u_theirs, s_theirs = up_theirs(g, s_theirs, p)
        for k in SHAPES:
            a, b = np.asarray(u_ours[k]), np.asarray(u_theirs[k])
            assert a.dtype == np.dtype(dtype) and a.shape == b.shape
            atol = ATOL_REL * max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=atol, err_msg=f"step {t}, {k}")
            n_clipped += int(not np.allclose(a, grads[t][k], rtol=1e-12, atol=0))
    return n_clipped


@pytest.mark.parametrize("complex_", [False, True], ids=["float64", "complex128"])
def test_clip_by_block_rms_matches_optax(x64, complex_):
    clipped = _teacher_forced(clip_by_block_rms(1.5), optax.clip_by_block_rms(1.5), complex_)
    assert 0.2 * N_STEPS * len(SHAPES) < clipped < 0.95 * N_STEPS * len(SHAPES)  # both regimes


@pytest.mark.parametrize("complex_", [False, True], ids=["float64", "complex128"])
def test_adaptive_grad_clip_matches_optax(x64, complex_):
    ours, theirs = adaptive_grad_clip(0.3, eps=1e-2), optax.adaptive_grad_clip(0.3, eps=1e-2)
    clipped = _teacher_forced(ours, theirs, complex_, seed=1)
    assert 0.2 * N_STEPS * len(SHAPES) < clipped < 0.95 * N_STEPS * len(SHAPES)


def test_adaptive_grad_clip_units_match_a_numpy_transcription(x64):
    """The unit convention itself, written out per rank (independent of optax)."""
    grads, params = _stream(2)
    axes = {
        "scalar": None,
        "vector": None,
        "row": None,
        "matrix": (0,),
        "heads": (0,),
        "conv": (0, 1, 2),
        "conv3d": (0, 1, 2, 3),
    }
    tx, clipping, eps = adaptive_grad_clip(0.2), 0.2, 1e-3
    update = jax.jit(tx.update)
    state = tx.init(_as_jax(params[0], jnp.float64))
    for t in range(0, N_STEPS, 7):
        u, state = update(_as_jax(grads[t], jnp.float64), state, _as_jax(params[t], jnp.float64))
        for k, ax in axes.items():
            g, p = grads[t][k], params[t][k]
            g_norm = np.sqrt(np.sum(g**2, axis=ax, keepdims=True))
            max_norm = clipping * np.maximum(np.sqrt(np.sum(p**2, axis=ax, keepdims=True)), eps)
            want = np.where(g_norm > max_norm, g * max_norm / np.maximum(g_norm, 1e-6), g)
            np.testing.assert_allclose(u[k], want, rtol=1e-12, atol=1e-300, err_msg=k)


def test_custom_axis_matches_optax(x64):
    grads, params = _stream(3)
    keys = ["matrix", "heads", "conv"]
    ours, theirs = adaptive_grad_clip(0.1, axis=-1), optax.adaptive_grad_clip(0.1, axis=-1)
    up_ours, up_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(0, N_STEPS, 11):
        g = {k: jnp.asarray(grads[t][k]) for k in keys}
        p = {k: jnp.asarray(params[t][k]) for k in keys}
        u, _ = up_ours(g, ours.init(p), p)
        with jax.numpy_dtype_promotion("standard"):
            want, _ = up_theirs(g, theirs.init(p), p)
        for k in keys:
            np.testing.assert_allclose(u[k], want[k], rtol=RTOL, atol=1e-300)


@pytest.mark.parametrize("make", [lambda: clip_by_block_rms(0.5), lambda: adaptive_grad_clip(0.1)])
def test_bf16_norms_in_float32_and_dtype_kept(make):
    grads, params = _stream(4)
    tx = make()
    g32, p32 = _as_jax(grads[5], jnp.float32), _as_jax(params[5], jnp.float32)
    g16, p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), (g32, p32))
    u16, _ = jax.jit(tx.update)(g16, tx.init(p16), p16)
    # The reference: the same transform on the exactly upcast bf16 values, then rounded.
    up = jax.tree.map(lambda x: x.astype(jnp.float32), (g16, p16))
    u32, _ = jax.jit(tx.update)(up[0], tx.init(up[1]), up[1])
    for k in SHAPES:
        assert u16[k].dtype == jnp.bfloat16
        np.testing.assert_array_equal(
            np.asarray(u16[k].astype(jnp.float32)),
            np.asarray(u32[k].astype(jnp.bfloat16).astype(jnp.float32)),
        )


@pytest.mark.parametrize("make", [lambda: clip_by_block_rms(0.5), lambda: adaptive_grad_clip(0.1)])
def test_zero_gradients_give_zeros_and_finite_derivatives(make):
    tx = make()
    params = _as_jax(_stream(5)[1][0], jnp.float32)
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    u, _ = update(zeros, state, params)
    for k in SHAPES:
        np.testing.assert_array_equal(u[k], np.zeros(SHAPES[k], np.float32))

    # Differentiating through the clip at an all-zero gradient (meta-learning) is finite too.
    def total(g):
        return sum(jnp.sum(x) for x in jax.tree.leaves(tx.update(g, state, params)[0]))

    d = jax.jit(jax.grad(total))(zeros)
    chex.assert_tree_all_finite(d)
    # And zero params with zero gradients: AGC's eps keeps max_norm positive, nothing is 0/0.
    u, _ = update(zeros, tx.init(zeros), zeros)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))


def test_agc_needs_params():
    tx = adaptive_grad_clip(0.1)
    params = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="`adaptive_grad_clip` needs the current parameters"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="structure"):
        tx.update({"v": jnp.ones((2, 3))}, tx.init(params), params)


def test_agc_rank_without_convention_names_the_leaf():
    params = {"enc": {"big": jnp.ones((2,) * 6)}}
    with pytest.raises(ValueError, match="'enc/big' of shape"):
        adaptive_grad_clip(0.1).init(params)
    adaptive_grad_clip(0.1, axis=(0, 1)).init(params)  # an explicit axis works for any rank
    with pytest.raises(ValueError, match="axis 7 is out of range for the leaf 'enc/big'"):
        adaptive_grad_clip(0.1, axis=7).init(params)
    with pytest.raises(TypeError, match="`axis`"):
        adaptive_grad_clip(0.1, axis=1.5)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda v: clip_by_block_rms(v), "threshold"),
        (lambda v: adaptive_grad_clip(v), "clipping"),
        (lambda v: adaptive_grad_clip(0.1, eps=v), "eps"),
    ],
)
@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_invalid_hyperparameters(make, argument, bad):
    with pytest.raises(ValueError, match=f"`{argument}` must be"):
        make(bad)


def test_hyperparams_in_state_and_settable_without_recompiling():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    grads = jax.tree.map(lambda x: 10.0 * x, params)
    tx = optix.chain(clip_by_block_rms(1.0), adaptive_grad_clip(0.5), optix.sgd(0.1))
    state = tx.init(params)
    assert isinstance(state[0], ClipByBlockRmsState)
    assert isinstance(state[1], AdaptiveGradClipState)
    assert set(optix.get_hyperparams(state)) >= {"threshold", "clipping", "eps"}
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    p1, state = step(params, state)
    state = optix.set_hyperparams(state, threshold=100.0, clipping=100.0)
    p2, state = step(params, state)
    np.testing.assert_allclose(p2["w"], params["w"] - 0.1 * grads["w"], rtol=1e-6)
    assert float(jnp.max(jnp.abs(p1["w"] - params["w"]))) < 0.1 * 0.5 * math.sqrt(3) + 1e-6
