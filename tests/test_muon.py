"""Matrix optimizers: Muon against optax.contrib.muon and torch.optim.Muon; Shampoo and SOAP
against NumPy transcriptions of the papers' algorithm boxes.

All reference runs are teacher-forced float64 comparisons over ``N_STEPS = 120`` steps on the
scalar/vector/matrix pytree of :mod:`tests.reference` (Muon against torch: on matrices only, as
torch.optim.Muon accepts nothing else).

Tolerances. Muon (optax, and torch with its bfloat16 cast removed): ``rtol = 1e-10`` as in
``tests/reference.py``: the same float64 polynomial evaluated in a different order. Shampoo and
SOAP: ``rtol = 1e-9, atol = 1e-11 * max|update|``. Both sides take eigendecompositions of the
same float64 statistics with different LAPACK drivers (NumPy's vs. XLA's), which agree on
eigenvectors to about ``machine_eps * ||S|| / gap``; the Shampoo statistics here reach condition
numbers of about 1e9 (gradients of 1e-3 to 30, ``eps = 1e-6``, rank-deficient ``G^T G`` early
on), and an inverse fourth root of such a matrix carries that into the update. Observed: at most
1.0e-12 of the leaf's largest update for Shampoo, 2.2e-15 for SOAP, 8e-15 for Muon against optax
and 7e-14 against torch. A convention mismatch (a root exponent, the refresh step, the first-step
skip, the order of the V permutation, eps inside or outside a root) is a relative difference of
1e-3 or more.
"""

from __future__ import annotations

import collections
import math
import re
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix.optimizers._matrix import muon_labels
from optix.transforms._muon import matrix_view, newton_schulz
from tests.reference import (
    N_STEPS,
    assert_updates_close,
    run_teacher_forced,
)

torch = pytest.importorskip("torch")

EIG_RTOL, EIG_ATOL_REL = 1e-9, 1e-11  # see the module docstring


def _global_x64() -> bool:
    """The process-wide x64 setting, as a thread that never entered ``jax.enable_x64`` sees it."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(jax.config.read("jax_enable_x64")))
    thread.start()
    thread.join()
    return seen[0]


@pytest.fixture
def x64_callbacks(x64):
    """x64 for the NumPy references too: ``jax.pure_callback`` canonicalises the callback's results
    on XLA's callback thread, which does not see the ``x64`` fixture's thread-local setting."""
    old = _global_x64()
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


class NumpyTransform:
    """A NumPy transcription in optax's init/update protocol, usable under ``jax.jit``.

    ``init_np(params) -> state`` and ``update_np(grads, state, params) -> (updates, state)`` work
    on dicts of float64 NumPy arrays; the state travels through JAX as arrays and the update runs
    as a ``jax.pure_callback``, so the transcription itself stays plain NumPy.
    """

    def __init__(self, init_np, update_np):
        self.init_np, self.update_np = init_np, update_np

    def init(self, params):
        return jax.tree.map(jnp.asarray, self.init_np(jax.tree.map(np.asarray, params)))

    def update(self, grads, state, params=None):
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (grads, state))

        def call(g, s, p):
            as_np = lambda t: jax.tree.map(lambda x: np.array(x, np.float64), t)  # noqa: E731
            u, s = self.update_np(as_np(g), as_np(s), as_np(p))
            return jax.tree.map(np.asarray, u), jax.tree.map(np.asarray, s)

        return jax.pure_callback(call, shapes, grads, state, params)


# ---------------------------------------------------------------------------------------------
# Muon
# ---------------------------------------------------------------------------------------------


def _optax_muon(lr, **kw):
    """optax.contrib.muon on the matrix, optax.adamw (= optix's AdamW branch) elsewhere."""
    labels = {"scalar": "adam", "vector": "adam", "matrix": "muon"}
    return optax.partition(
        {
            "muon": optax.contrib.muon(lr, **kw),
            "adam": optax.adamw(lr, eps=1e-8, weight_decay=0.0),
        },
        labels,
    )


@pytest.mark.parametrize(
    "ours_kw, theirs_kw",
    [
        ({}, {}),
        ({"nesterov": False, "weight_decay": 0.1}, {"nesterov": False, "weight_decay": 0.1}),
        ({"scale_mode": "match_rms_adamw", "beta": 0.9}, {"consistent_rms": 0.2, "beta": 0.9}),
    ],
    ids=["default", "no-nesterov-decay", "rms"],
)
def test_muon_matches_optax(x64, ours_kw, theirs_kw):
    """optax's conventions: bias-corrected momentum, ``X / (||X|| + eps)``, (in, out) layout."""
    optax_conv = {"bias_correction": True, "eps_mode": "add", "eps": 1e-8}
    ours = optix.muon(0.02, **optax_conv, **ours_kw)
    run_teacher_forced(ours, _optax_muon(0.02, eps=1e-8, **theirs_kw), "muon vs optax")


def test_muon_default_differs_from_optax_by_bias_correction(x64):
    """optix's default momentum is Jordan's and torch's (no bias correction): optax's differs."""
    with pytest.raises(AssertionError, match="muon default"):
        run_teacher_forced(optix.muon(0.02, eps=1e-8), _optax_muon(0.02), "muon default")


TORCH_SHAPES = {"a": (3, 4), "b": (5, 2), "c": (4, 4)}


def _torch_gradients(seed: int = 3):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(N_STEPS):
        scale = 0.0 if t == 9 else float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0))))
        out.append({k: scale * rng.standard_normal(s) for k, s in TORCH_SHAPES.items()})
    return out


def _run_against_torch(ours, torch_kw, *, rtol=0.0, atol_rel=0.0, check=True, steps=N_STEPS):
    """Teacher-forced: optix gets the params and gradient torch.optim.Muon had at every step.
    Returns the largest ``|ours - torch| / max|torch|`` over leaves and steps."""
    rng = np.random.default_rng(0)
    tparams = {
        k: torch.tensor(rng.standard_normal(s), dtype=torch.float64, requires_grad=True)
        for k, s in TORCH_SHAPES.items()
    }
    topt = torch.optim.Muon(list(tparams.values()), **torch_kw)
    state = ours.init({k: jnp.asarray(p.detach().numpy()) for k, p in tparams.items()})
    update = jax.jit(ours.update)
    worst = 0.0
    for step, grad in enumerate(_torch_gradients()[:steps]):
        old = {k: p.detach().numpy().copy() for k, p in tparams.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grad[k], dtype=torch.float64)
        topt.step()
        expected = {k: p.detach().numpy() - old[k] for k, p in tparams.items()}
        as_jax = lambda t: {k: jnp.asarray(v) for k, v in t.items()}  # noqa: E731
        got, state = update(as_jax(grad), state, as_jax(old))
        for k, e in expected.items():
            scale = max(float(np.abs(e).max()), 1e-300)
            worst = max(worst, float(np.abs(np.asarray(got[k]) - e).max()) / scale)
        if check:
            assert_updates_close(got, expected, step, "muon vs torch", rtol=rtol, atol_rel=atol_rel)
    return worst


@pytest.fixture
def torch_ns_float64(monkeypatch):
    """torch.optim.Muon casts to bfloat16 before Newton-Schulz; for a float64 comparison of its
    algorithm the cast is made a copy (torch's in-place division then runs on float64)."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())


@pytest.mark.parametrize(
    "ours_kw, torch_kw",
    [
        ({"weight_decay": 0.1}, {"weight_decay": 0.1}),
        ({"nesterov": False}, {"nesterov": False, "weight_decay": 0.0}),
        (
            {"scale_mode": "match_rms_adamw", "weight_decay": 0.05, "beta": 0.9},
            {"adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.05, "momentum": 0.9},
        ),
    ],
    ids=["default", "no-nesterov", "match-rms"],
)
def test_muon_matches_torch_in_float64(x64, torch_ns_float64, ours_kw, torch_kw):
    ours = optix.muon(0.02, layout="out_in", **ours_kw)
    _run_against_torch(ours, {"lr": 0.02, **torch_kw}, rtol=1e-10, atol_rel=1e-13)


def test_muon_differs_from_torch_by_its_bfloat16_newton_schulz(x64):
    """Unpatched torch runs Newton-Schulz in bfloat16 (8 bits of mantissa, 4e-3 relative per
    operation, amplified by five iterations whose coefficients reach 4.8): optix computes in
    float32 or wider, so the two agree to about a tenth of the step (7e-2 observed), not to
    float64 precision."""
    ours = optix.muon(0.02, layout="out_in", weight_decay=0.1)
    worst = _run_against_torch(ours, {"lr": 0.02, "weight_decay": 0.1}, check=False, steps=30)
    assert 1e-4 < worst < 0.25


def test_newton_schulz_with_cubic_coefficients_converges_to_the_polar_factor(x64):
    """With the classical cubic iteration ``(1.5, -0.5, 0)`` NS converges to ``U V^T``."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    u, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
    got = newton_schulz(x, steps=60, coeffs=(1.5, -0.5, 0.0))
    np.testing.assert_allclose(got, u @ vt, atol=1e-10)
    per_step = newton_schulz(x, steps=2, coeffs=[(3.4445, -4.7750, 2.0315)] * 2)
    np.testing.assert_allclose(per_step, newton_schulz(x, steps=2), rtol=1e-14)
    with pytest.raises(ValueError, match="ns_coeffs"):
        newton_schulz(x, steps=3, coeffs=[(1.0, 0.0, 0.0)] * 2)


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_muon_orthogonalises_conv_kernels_as_matrices(layout):
    """A 4-D kernel is orthogonalised as its 2-D view and reshaped back; the 'original' scale
    uses ``fan_out`` of that layout."""
    shape = (3, 3, 2, 5) if layout == "in_out" else (5, 2, 3, 3)
    g = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
    tx = optix.scale_by_muon(nesterov=False, layout=layout)
    u, _ = jax.jit(tx.update)({"k": g}, tx.init({"k": g}))
    rows, cols = matrix_view(shape, layout)
    assert (rows, cols) == ((18, 5) if layout == "in_out" else (5, 18))
    expected = newton_schulz(0.05 * g.reshape(rows, cols))  # the first EMA step is 0.05 g
    # 'original' scale: sqrt(max(1, fan_out / fan_in)), fan_out = 5 < fan_in = 18: 1
    np.testing.assert_allclose(u["k"], expected.reshape(shape), rtol=2e-5, atol=1e-6)
    s = np.linalg.svd(np.asarray(u["k"]).reshape(rows, cols), compute_uv=False)
    assert np.all((s > 0.5) & (s < 1.5))  # approximately orthogonal


def test_muon_scale_uses_the_layout_fan_out():
    g = {"w": jnp.asarray(np.random.default_rng(2).standard_normal((2, 8)), jnp.float32)}
    u_in_out = optix.scale_by_muon().update(g, optix.scale_by_muon().init(g))[0]["w"]
    u_out_in = optix.scale_by_muon(layout="out_in").update(g, optix.scale_by_muon().init(g))[0]
    np.testing.assert_allclose(u_in_out, 2.0 * u_out_in["w"], rtol=1e-6)  # sqrt(8 / 2)


def test_muon_labels_default_rule_patterns_and_errors():
    params = {
        "embed": jnp.zeros((10, 4)),
        "conv": jnp.zeros((3, 3, 2, 4)),
        "dense": {"w": jnp.zeros((4, 4)), "b": jnp.zeros(4)},
        "scale": jnp.zeros(()),
    }
    assert muon_labels(params) == {
        "embed": "muon",
        "conv": "muon",
        "dense": {"w": "muon", "b": "adam"},
        "scale": "adam",
    }
    assert muon_labels(params, {"embed": "adam"})["embed"] == "adam"
    assert muon_labels(params, {"embed": "adam"})["conv"] == "muon"
    with pytest.raises(ValueError, match="ndim >= 2"):
        muon_labels(params, {"**/b": "muon"})
    with pytest.raises(ValueError, match="'muon' or 'adam'"):
        muon_labels(params, lambda p: jax.tree.map(lambda _: "sgd", p))
    # a user-labelled embedding takes exactly AdamW's step
    tx = optix.muon(0.01, labels={"embed": "adam"})
    grads = jax.tree.map(lambda x: jnp.ones_like(x), params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["embed"], -0.01, rtol=1e-6)


def test_muon_with_no_matrix_or_only_matrices_keeps_an_idle_branch():
    """The branch no leaf uses has a state without buffers, which ``update`` leaves alone (so the
    state's structure does not depend on which kinds of leaves the model has)."""
    for params, idle in (({"v": jnp.ones(3)}, "muon"), ({"w": jnp.ones((3, 2))}, "adam")):
        tx = optix.muon(0.1)
        state = tx.init(params)
        updates, new = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        assert sorted(state[0].inner_states) == ["adam", "muon"]
        assert all(x.ndim == 0 for x in jax.tree.leaves(state[0].inner_states[idle]))
        assert jax.tree.structure(new) == jax.tree.structure(state)
        for a, b in zip(
            jax.tree.leaves(new[0].inner_states[idle]),
            jax.tree.leaves(state[0].inner_states[idle]),
            strict=True,
        ):
            assert a == b


def test_muon_separate_adam_learning_rate():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    tx = optix.muon(0.02, adam_learning_rate=1e-3)
    state = tx.init(params)
    hp = optix.get_hyperparams(state)
    assert sorted(k for k in hp if k.endswith("learning_rate")) == [
        "inner_states/adam/1/learning_rate",
        "inner_states/muon/1/learning_rate",
    ]
    state = optix.set_hyperparams(state, **{"adam/learning_rate": 0.5})
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    np.testing.assert_allclose(updates["b"], -0.5, rtol=1e-6)


def test_matrix_optimizers_reject_complex_and_bad_options():
    z = {"w": jnp.zeros((2, 2), jnp.complex64)}
    for tx in (optix.scale_by_shampoo(), optix.scale_by_soap()):
        with pytest.raises(TypeError, match="complex"):
            tx.init(z)
    with pytest.raises(ValueError, match="ndim >= 2"):
        optix.scale_by_muon().init({"b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="beta"):
        optix.scale_by_muon(beta=1.0)
    with pytest.raises(ValueError, match="scale_mode"):
        optix.scale_by_muon(scale_mode="wide")
    with pytest.raises(TypeError, match="precondition_frequency"):
        optix.scale_by_shampoo(precondition_frequency=2.5)
    with pytest.raises(ValueError, match="graft"):
        optix.scale_by_shampoo(graft="sgd")
    with pytest.raises(ValueError, match="stat_decay"):
        optix.scale_by_shampoo(stat_decay=1.5)
    with pytest.raises(ValueError, match="shampoo_beta"):
        optix.scale_by_soap(shampoo_beta=1.0)


def _complex_stream(seed: int, shape: tuple[int, int]) -> list[np.ndarray]:
    """``N_STEPS`` complex gradients: the real stream's magnitudes (1e-3 .. 30, one zero step)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(N_STEPS):
        scale = 0.0 if t == 9 else float(np.exp(rng.uniform(math.log(1e-3), math.log(30.0))))
        out.append(scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    return out


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_on_complex_matrices_matches_optax(x64, nesterov):
    """optax.contrib.muon orthogonalises complex matrices with ``X X^H``; so does optix, step for
    step (teacher-forced, complex128, optax's conventions)."""
    grads, params = _complex_stream(0, (4, 3)), _complex_stream(1, (4, 3))
    ours = optix.muon(0.02, bias_correction=True, eps_mode="add", eps=1e-8, nesterov=nesterov)
    theirs = optax.contrib.muon(0.02, eps=1e-8, nesterov=nesterov)
    p0 = {"w": jnp.asarray(params[0])}
    s_ours, s_theirs = ours.init(p0), theirs.init(p0)
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(N_STEPS):
        g, p = {"w": jnp.asarray(grads[t])}, {"w": jnp.asarray(params[t])}
        u_ours, s_ours = step_ours(g, s_ours, p)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = step_theirs(g, s_theirs, p)
        assert u_ours["w"].dtype == jnp.complex128
        scale = float(np.abs(u_theirs["w"]).max())
        np.testing.assert_allclose(
            u_ours["w"], u_theirs["w"], rtol=1e-10, atol=1e-13 * scale, err_msg=f"step {t}"
        )


def test_newton_schulz_on_a_complex_matrix_approaches_its_polar_factor(x64):
    """With the cubic iteration, NS of a complex ``U S V^H`` converges to ``U V^H`` (wide and
    tall)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))
    u, _, vh = np.linalg.svd(x, full_matrices=False)
    got = newton_schulz(jnp.asarray(x), steps=60, coeffs=(1.5, -0.5, 0.0))
    np.testing.assert_allclose(got, u @ vh, atol=1e-10)
    np.testing.assert_allclose(
        newton_schulz(jnp.asarray(x.T), steps=60, coeffs=(1.5, -0.5, 0.0)), (u @ vh).T, atol=1e-10
    )


def test_muon_converges_on_complex_least_squares():
    """``min_W ||A W - B||^2`` over a complex ``W``: the descent direction is the conjugate of
    ``jax.grad`` (as for every optix optimizer on complex params)."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((8, 5)) + 1j * rng.standard_normal((8, 5)), jnp.complex64)
    w_star = rng.standard_normal((5, 3)) + 1j * rng.standard_normal((5, 3))
    b = a @ jnp.asarray(w_star, jnp.complex64)
    loss = lambda w: jnp.sum(jnp.abs(a @ w - b) ** 2)  # noqa: E731
    tx = optix.muon(optix.schedules.cosine_decay(0.3, 300), beta=0.9)
    w = jnp.zeros((5, 3), jnp.complex64)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        g = jnp.conj(jax.grad(loss)(w))
        u, state = tx.update(g, state, w)
        return optix.apply_updates(w, u), state

    for _ in range(300):
        w, state = step(w, state)
    assert w.dtype == jnp.complex64
    assert float(loss(w)) < 1e-3 * float(loss(jnp.zeros((5, 3), jnp.complex64)))


# ---------------------------------------------------------------------------------------------
# Shampoo: NumPy transcription of Gupta, Koren & Singer 2018, Algorithm 1 (matrix case) and
# Algorithm 2 (order-k tensors: exponent -1/(2k) with k preconditioned axes), with the options of
# Anil et al. 2020 that optix offers: blocks, a root refresh every f steps, EMA statistics and
# layer-wise grafting. Scalars and vectors: diagonal AdaGrad (Duchi et al. 2011, eq. 4's diagonal
# form), as optix documents.
# ---------------------------------------------------------------------------------------------


def _np_splits(dim, block_size):
    if block_size is None or dim <= block_size:
        return [(0, dim)]
    return [(s, min(s + block_size, dim)) for s in range(0, dim, block_size)]


def _np_blocks(shape, block_size):
    return [
        (slice(*r), slice(*c))
        for r in _np_splits(shape[0], block_size)
        for c in _np_splits(shape[1], block_size)
    ]


def _np_root(stat, eps, p):
    """(stat + eps I)^{-1/p}: Algorithm 1 keeps L_t = eps I + sum G G^T."""
    lam, q = np.linalg.eigh(stat + eps * np.eye(len(stat)))
    return (q * lam ** (-1.0 / p)) @ q.T


def numpy_shampoo(
    lr,
    eps=1e-6,
    stat_decay=1.0,
    freq=1,
    block_size=None,
    max_dim=1024,
    graft="none",
    graft_eps=1e-8,
    graft_b2=0.999,
):
    def acc(old, new):
        return old + new if stat_decay == 1.0 else stat_decay * old + (1 - stat_decay) * new

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/graft"] = np.zeros(p.shape)
            state[k + "/diag"] = np.zeros(p.shape)
            if p.ndim == 2:
                for i, (r, c) in enumerate(_np_blocks(p.shape, block_size)):
                    m, n = r.stop - r.start, c.stop - c.start
                    state[f"{k}/L{i}"], state[f"{k}/R{i}"] = np.zeros((m, m)), np.zeros((n, n))
                    state[f"{k}/PL{i}"], state[f"{k}/PR{i}"] = np.eye(m), np.eye(n)
        return state

    def update(grads, state, params):
        s = dict(state)
        t = int(s["t"]) + 1
        refresh = (t - 1) % freq == 0  # roots recomputed on steps 1, 1 + f, ...
        out = {}
        for k, g in grads.items():
            s[k + "/diag"] = acc(s[k + "/diag"], g * g)
            if g.ndim < 2:
                u = g / np.sqrt(s[k + "/diag"] + eps)
            else:
                u = np.zeros_like(g)
                for i, b in enumerate(_np_blocks(g.shape, block_size)):
                    gb = g[b]
                    on_l, on_r = gb.shape[0] <= max_dim, gb.shape[1] <= max_dim
                    p = 2 * (on_l + on_r)  # Algorithm 2: exponent 1/(2k)
                    ub = gb
                    if on_l:
                        s[f"{k}/L{i}"] = acc(s[f"{k}/L{i}"], gb @ gb.T)  # Alg. 1, line 5
                        if refresh:
                            s[f"{k}/PL{i}"] = _np_root(s[f"{k}/L{i}"], eps, p)
                        ub = s[f"{k}/PL{i}"] @ ub
                    if on_r:
                        s[f"{k}/R{i}"] = acc(s[f"{k}/R{i}"], gb.T @ gb)  # Alg. 1, line 6
                        if refresh:
                            s[f"{k}/PR{i}"] = _np_root(s[f"{k}/R{i}"], eps, p)
                        ub = ub @ s[f"{k}/PR{i}"]  # Alg. 1, line 7
                    if not (on_l or on_r):
                        ub = gb / np.sqrt(s[k + "/diag"][b] + eps)
                    u[b] = ub
            if graft == "adagrad":
                s[k + "/graft"] = s[k + "/graft"] + g * g
                base = g / (np.sqrt(s[k + "/graft"]) + graft_eps)
            elif graft == "adam":
                s[k + "/graft"] = graft_b2 * s[k + "/graft"] + (1 - graft_b2) * g * g
                base = g / (np.sqrt(s[k + "/graft"] / (1 - graft_b2**t)) + graft_eps)
            if graft != "none":
                norm = np.linalg.norm(u)
                u = u * (np.linalg.norm(base) / norm if norm > 0 else 0.0)
            out[k] = -lr * u
        s["t"] = np.asarray(float(t))
        return out, s

    return NumpyTransform(init, update)


SHAMPOO_CASES = {
    "paper": ({}, {}),
    "freq5-blocks2-ema-graft-adam": (
        {"precondition_frequency": 5, "block_size": 2, "stat_decay": 0.95, "graft": "adam"},
        {"freq": 5, "block_size": 2, "stat_decay": 0.95, "graft": "adam"},
    ),
    "one-side-graft-adagrad": (
        {"max_precond_dim": 3, "precondition_frequency": 3, "graft": "adagrad", "eps": 1e-4},
        {"max_dim": 3, "freq": 3, "graft": "adagrad", "eps": 1e-4},
    ),
    "blocks3-maxdim2": (
        {"block_size": 3, "max_precond_dim": 2},
        {"block_size": 3, "max_dim": 2},
    ),
}


@pytest.mark.parametrize("name", list(SHAMPOO_CASES))
def test_shampoo_matches_numpy_transcription(x64_callbacks, name):
    ours_kw, ref_kw = SHAMPOO_CASES[name]
    run_teacher_forced(
        optix.shampoo(0.1, **ours_kw),
        numpy_shampoo(0.1, **ref_kw),
        f"shampoo {name}",
        rtol=EIG_RTOL,
        atol_rel=EIG_ATOL_REL,
    )


def test_shampoo_first_step_of_a_matrix_is_its_orthogonal_factor(x64):
    """With one gradient and eps -> 0, (G G^T)^{-1/4} G (G^T G)^{-1/4} = U V^T."""
    g = np.random.default_rng(5).standard_normal((4, 3))
    tx = optix.scale_by_shampoo(eps=1e-12)
    u, _ = jax.jit(tx.update)({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))
    uu, _, vt = np.linalg.svd(g, full_matrices=False)
    np.testing.assert_allclose(u["w"], uu @ vt, atol=1e-5)


def test_shampoo_momentum_and_decay_follow_the_preconditioner():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = jax.tree.map(lambda x: 0.3 * x, params)
    ours = optix.shampoo(0.1, momentum=0.9, weight_decay=0.01)
    ref = optix.chain(
        optix.scale_by_shampoo(),
        optix.scale_by_momentum(0.9),
        optix.add_decayed_weights(0.01),
        optix.scale_lr(0.1),
    )
    s1, s2 = ours.init(params), ref.init(params)
    step1, step2 = jax.jit(ours.update), jax.jit(ref.update)
    for _ in range(3):
        u1, s1 = step1(grads, s1, params)
        u2, s2 = step2(grads, s2, params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_shampoo_float32_damping_keeps_rank_deficient_statistics_finite():
    """A (2, 64) gradient makes R (64 x 64) of rank <= 2: float32 eigh returns round-off
    eigenvalues of either sign; they are floored before eps is added, so the step stays finite
    and bounded even with eps = 0."""
    rng = np.random.default_rng(0)
    tx = optix.scale_by_shampoo(eps=0.0, precondition_frequency=2)
    params = {"w": jnp.zeros((2, 64), jnp.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(4):
        g = {"w": jnp.asarray(100 * rng.standard_normal((2, 64)), jnp.float32)}
        u, state = update(g, state)
        assert bool(jnp.all(jnp.isfinite(u["w"])))


# ---------------------------------------------------------------------------------------------
# SOAP: NumPy transcription of Vyas et al. 2024, Algorithm 3 (one step of SOAP on an m x n layer)
# with Algorithm 4 (basis refresh: one power-iteration step, then QR), and the authors' code's
# details that the paper leaves implicit: the first step only gathers L, R and takes Q = eigh
# eigenvectors in decreasing order; bias correction counts the steps after it; before each
# refresh the columns of Q are sorted by q^T L q (decreasing) and V is permuted the same way.
# ---------------------------------------------------------------------------------------------


def numpy_soap(lr, b1=0.95, b2=0.95, eps=1e-8, sb=None, freq=10, block_size=None, max_dim=10000):
    sb = b2 if sb is None else sb

    def init(params):
        state = {"t": np.zeros(())}
        for k, p in params.items():
            state[k + "/M"], state[k + "/V"] = np.zeros(p.shape), np.zeros(p.shape)
            if p.ndim == 2:
                for i, (r, c) in enumerate(_np_blocks(p.shape, block_size)):
                    m, n = r.stop - r.start, c.stop - c.start
                    state[f"{k}/L{i}"], state[f"{k}/R{i}"] = np.zeros((m, m)), np.zeros((n, n))
                    state[f"{k}/QL{i}"], state[f"{k}/QR{i}"] = np.eye(m), np.eye(n)
        return state

    def power_qr(stat, q, v, axis):  # Algorithm 4, with the authors' sorting
        order = np.argsort(-np.diag(q.T @ stat @ q), kind="stable")
        q_new, _ = np.linalg.qr(stat @ q[:, order])
        return q_new, np.take(v, order, axis=axis)

    def first_basis(s, k, i, gb):
        """Statistics from the first gradient; bases: eigenvectors, largest eigenvalue first."""
        if gb.shape[0] <= max_dim:
            s[f"{k}/L{i}"] = (1 - sb) * gb @ gb.T
            s[f"{k}/QL{i}"] = np.linalg.eigh(s[f"{k}/L{i}"])[1][:, ::-1]
        if gb.shape[1] <= max_dim:
            s[f"{k}/R{i}"] = (1 - sb) * gb.T @ gb
            s[f"{k}/QR{i}"] = np.linalg.eigh(s[f"{k}/R{i}"])[1][:, ::-1]

    def update(grads, state, params):
        s = dict(state)
        steps_before = int(s["t"])
        s["t"] = np.asarray(float(steps_before + 1))
        out = {}
        for k, g in grads.items():
            if steps_before == 0:  # first step: statistics and eigh bases only
                for i, b in enumerate(_np_blocks(g.shape, block_size) if g.ndim == 2 else []):
                    first_basis(s, k, i, g[b])
                out[k] = np.zeros_like(g)
                continue
            t = steps_before
            s[k + "/M"] = b1 * s[k + "/M"] + (1 - b1) * g  # Alg. 3, line 4
            step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            if g.ndim < 2:  # plain Adam
                s[k + "/V"] = b2 * s[k + "/V"] + (1 - b2) * g * g
                out[k] = -step * s[k + "/M"] / (np.sqrt(s[k + "/V"]) + eps)
                continue
            u, v = np.zeros_like(g), s[k + "/V"].copy()
            for i, b in enumerate(_np_blocks(g.shape, block_size)):
                gb, mb = g[b], s[k + "/M"][b]
                on_l, on_r = gb.shape[0] <= max_dim, gb.shape[1] <= max_dim
                ql = s[f"{k}/QL{i}"] if on_l else np.eye(gb.shape[0])
                qr = s[f"{k}/QR{i}"] if on_r else np.eye(gb.shape[1])
                gp = ql.T @ gb @ qr  # line 3
                mp = ql.T @ mb @ qr  # line 5
                vb = b2 * v[b] + (1 - b2) * gp * gp  # line 6 (Adam's second moment)
                u[b] = -step * (ql @ (mp / (np.sqrt(vb) + eps)) @ qr.T)  # lines 6-8
                if on_l:
                    s[f"{k}/L{i}"] = sb * s[f"{k}/L{i}"] + (1 - sb) * gb @ gb.T  # line 9
                if on_r:
                    s[f"{k}/R{i}"] = sb * s[f"{k}/R{i}"] + (1 - sb) * gb.T @ gb  # line 10
                if t % freq == 0:  # lines 11-13
                    if on_l:
                        s[f"{k}/QL{i}"], vb = power_qr(s[f"{k}/L{i}"], s[f"{k}/QL{i}"], vb, 0)
                    if on_r:
                        s[f"{k}/QR{i}"], vb = power_qr(s[f"{k}/R{i}"], s[f"{k}/QR{i}"], vb, 1)
                v[b] = vb
            s[k + "/V"] = v
            out[k] = u
        return out, s

    return NumpyTransform(init, update)


SOAP_CASES = {
    "authors-defaults": ({}, {}),
    "freq3-shampoo-beta": (
        {"precondition_frequency": 3, "shampoo_beta": 0.99, "b1": 0.9, "b2": 0.999},
        {"freq": 3, "sb": 0.99, "b1": 0.9, "b2": 0.999},
    ),
    "blocks2-freq4": (
        {"precondition_frequency": 4, "block_size": 2},
        {"freq": 4, "block_size": 2},
    ),
    "one-side": (
        {"precondition_frequency": 2, "max_precond_dim": 3},
        {"freq": 2, "max_dim": 3},
    ),
}


@pytest.mark.parametrize("name", list(SOAP_CASES))
def test_soap_matches_numpy_transcription(x64_callbacks, name):
    ours_kw, ref_kw = SOAP_CASES[name]
    run_teacher_forced(
        optix.soap(3e-3, weight_decay=0.0, **ours_kw),
        numpy_soap(3e-3, **ref_kw),
        f"soap {name}",
        rtol=EIG_RTOL,
        atol_rel=EIG_ATOL_REL,
    )


def test_soap_weight_decay_uses_the_params_before_the_step():
    """optix decays ``W_{t-1}`` (as AdamW does); the authors' code decays the already-updated
    params, a difference of ``lr^2 * lambda`` times the step."""
    params = {"w": jnp.ones((2, 2))}
    g = {"w": jnp.array([[1.0, 2.0], [0.5, -1.0]])}
    with_decay, without = optix.soap(0.1, weight_decay=0.5), optix.soap(0.1, weight_decay=0.0)
    s1, s2 = with_decay.init(params), without.init(params)
    step1, step2 = jax.jit(with_decay.update), jax.jit(without.update)
    for _ in range(2):
        u1, s1 = step1(g, s1, params)
        u2, s2 = step2(g, s2, params)
    np.testing.assert_allclose(u1["w"] - u2["w"], -0.1 * 0.5 * params["w"], rtol=1e-6)


def test_soap_refresh_keeps_an_eigenbasis():
    """After refreshes, Q_L^T L Q_L is nearly diagonal (power iteration tracks the eigenbasis)."""
    rng = np.random.default_rng(0)
    tx = optix.scale_by_soap(precondition_frequency=2, b2=0.99)
    params = {"w": jnp.zeros((4, 3), jnp.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    mix = rng.standard_normal((4, 4))
    for _ in range(60):
        g = mix @ rng.standard_normal((4, 3))
        _, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
    leaf = state.leaves["w"]
    q, stat = np.asarray(leaf.left_basis[0][0]), np.asarray(leaf.left[0][0])  # group 0, block 0
    rotated = q.T @ stat @ q
    off = rotated - np.diag(np.diag(rotated))
    assert np.abs(off).max() < 0.05 * np.abs(rotated).max()
    assert np.all(np.diff(np.diag(rotated)) <= 1e-3 * np.abs(rotated).max())  # decreasing


def test_matrix_optimizers_jit_and_eval_shape_with_conv_and_blocks():
    params = {
        "conv": jnp.ones((1, 2, 2, 3)),
        "w": jnp.ones((6, 3)),
        "b": jnp.ones(4),
        "s": jnp.ones(()),
    }
    grads = jax.tree.map(
        lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape), params
    )
    for tx in (
        optix.muon(0.01),
        optix.shampoo(0.01, block_size=4, precondition_frequency=2, graft="adam"),
        optix.soap(0.01, block_size=4, precondition_frequency=2),
    ):
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        state = tx.init(params)
        assert jax.tree.structure(jax.eval_shape(tx.init, shapes)) == jax.tree.structure(state)
        update = jax.jit(tx.update)
        for _ in range(3):
            u, state = update(grads, state, params)
            for leaf, p in zip(jax.tree.leaves(u), jax.tree.leaves(params), strict=True):
                assert leaf.shape == p.shape and bool(jnp.all(jnp.isfinite(leaf)))


# ---------------------------------------------------------------------------------------------
# Blocks, edge cases, dtypes and optax's state utilities
# ---------------------------------------------------------------------------------------------


def _hlo_ops(tx, params) -> collections.Counter:
    """The operations of one jitted step, by name (custom calls by target: LAPACK's ``syevd``
    on CPU, cuSOLVER's on GPU), from the lowered program; nothing is compiled."""
    text = jax.jit(tx.update).lower(params, tx.init(params), params).as_text()
    ops = collections.Counter(re.findall(r"\b(?:stablehlo|chlo|func)\.(\w+)", text))
    ops.update(re.findall(r"custom_call @(\w+)", text))
    return ops


@pytest.mark.parametrize(
    "make",
    [
        lambda bs: optix.scale_by_shampoo(block_size=bs, precondition_frequency=2),
        lambda bs: optix.scale_by_soap(block_size=bs),
    ],
    ids=["shampoo", "soap"],
)
def test_the_compiled_step_does_not_grow_with_the_number_of_blocks(make):
    """A 64 x 64 leaf in 256 blocks of 4 x 4 compiles to the same program as in 4 blocks of
    32 x 32: each group of equal blocks takes one batched decomposition (before, one per block:
    256 eigendecompositions and minutes of compile time)."""
    params = {"w": jnp.ones((64, 64))}
    small, large = _hlo_ops(make(4), params), _hlo_ops(make(32), params)
    assert small == large
    assert any("syevd" in op or "eigh" in op or "syevj" in op for op in small), small


def test_blocks_of_several_shapes_match_the_unblocked_math_block_by_block(x64):
    """A 7 x 5 leaf with ``block_size=3`` has four block shapes (3x3, 3x2, 1x3, 1x2); each block's
    first Shampoo step is its own orthogonal factor ``U V^T``, wherever it sits."""
    g = np.random.default_rng(7).standard_normal((7, 5))
    tx = optix.scale_by_shampoo(eps=1e-30, block_size=3)
    u = np.asarray(
        jax.jit(tx.update)({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))[0]["w"]
    )
    for rows in (slice(0, 3), slice(3, 6), slice(6, 7)):
        for cols in (slice(0, 3), slice(3, 5)):
            uu, _, vt = np.linalg.svd(g[rows, cols], full_matrices=False)
            np.testing.assert_allclose(u[rows, cols], uu @ vt, atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (2, 0, 3)])
@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.muon(0.1),
        lambda: optix.shampoo(0.1, graft="adam"),
        lambda: optix.shampoo(0.1, block_size=2, precondition_frequency=2),
        lambda: optix.soap(0.1, block_size=2),
    ],
    ids=["muon", "shampoo-graft", "shampoo-blocks", "soap"],
)
def test_leaves_with_no_elements_get_zero_size_updates(make, shape):
    params = {"e": jnp.ones(shape), "w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    tx = make()
    state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
    update = jax.jit(tx.update)
    for _ in range(2):
        u, new = update(grads, state, params)
        assert jax.tree.structure(new) == jax.tree.structure(state)
        state = new
    assert u["e"].shape == shape and u["e"].dtype == jnp.float32
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))
    rest = {k: v for k, v in params.items() if k != "e"}
    alone_tx = make()
    alone_state = alone_tx.init(rest)
    for _ in range(2):
        alone, alone_state = alone_tx.update({k: grads[k] for k in rest}, alone_state, rest)
    for k in rest:
        np.testing.assert_allclose(u[k], alone[k], rtol=1e-6)


def test_muon_accepts_an_empty_tree_like_the_other_optimizers():
    for tx in (optix.muon(0.1), optix.muon(0.1, adam_learning_rate=1e-3), optix.adam(0.1)):
        state = tx.init({})
        updates, new = jax.jit(tx.update)({}, state, {})
        assert updates == {}
        assert jax.tree.structure(new) == jax.tree.structure(state)


@pytest.mark.parametrize(
    "params",
    [
        {"w": jnp.ones((3, 2)), "b": jnp.ones(2)},
        {"w": jnp.ones((3, 2))},
        {"b": jnp.ones(2)},
    ],
    ids=["both", "matrices-only", "vectors-only"],
)
def test_optax_map_params_finds_the_params_in_muons_state(params):
    """``optax.tree.map_params`` builds the state from stand-in params with no leaves: muon's
    state has a branch for every label whatever the leaves, so the stand-ins line up with the
    momentum buffers of every model."""
    tx = optix.muon(0.02, adam_learning_rate=1e-3)
    state = tx.init(params)
    shapes = optax.tree.map_params(
        tx, lambda x: str(x.shape), state, transform_non_params=lambda _: None
    )
    # every buffer found as params (and nothing else: counts and hyperparameters became None)
    assert sorted(jax.tree.leaves(shapes)) == sorted(
        str(x.shape) for x in jax.tree.leaves(state) if x.ndim
    )
    # with a tree shaped like the params (a tree of specs, say): the holes of each branch are None
    specs = jax.tree.map(lambda x: f"spec{x.shape}", params)
    got = optax.tree.map_params(
        tx,
        lambda x, spec: None if x is None else spec,
        state,
        specs,
        transform_non_params=lambda _: None,
        is_leaf=lambda x: x is None,
    )
    muon_mu = got.inner_states["muon"][0].mu
    assert muon_mu == {k: (specs[k] if v.ndim >= 2 else None) for k, v in params.items()}


def test_matrix_state_of_low_precision_params_defaults_to_float32():
    """bf16 params: Shampoo's and SOAP's statistics, roots and bases and Muon's momentum are
    float32 unless a dtype is asked for; updates stay bf16."""
    params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.bfloat16)}
    matrices = {"w": params["w"]}
    f32, bf16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)

    def dtypes(tree):
        return {x.dtype for x in jax.tree.leaves(tree) if x.ndim}

    shampoo = optix.scale_by_shampoo(graft="adam").init(params)
    assert dtypes((shampoo.leaves, shampoo.graft)) == {f32}
    assert dtypes(optix.scale_by_soap().init(params)) == {f32}
    assert dtypes(optix.scale_by_muon().init(matrices).mu) == {f32}
    assert dtypes(optix.scale_by_shampoo(stat_dtype=jnp.bfloat16).init(params).leaves) == {bf16}
    assert dtypes(optix.scale_by_soap(stat_dtype=jnp.bfloat16).init(params).leaves) == {bf16}
    assert dtypes(optix.scale_by_muon(mu_dtype=jnp.bfloat16).init(matrices).mu) == {bf16}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
    for tx in (optix.shampoo(0.1), optix.soap(0.1), optix.muon(0.1)):
        u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        assert {x.dtype for x in jax.tree.leaves(u)} == {bf16}


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda d: optix.scale_by_shampoo(stat_dtype=d), "stat_dtype"),
        (lambda d: optix.shampoo(0.1, stat_dtype=d), "stat_dtype"),
        (lambda d: optix.scale_by_soap(stat_dtype=d), "stat_dtype"),
        (lambda d: optix.soap(0.1, mu_dtype=d), "mu_dtype"),
        (lambda d: optix.scale_by_muon(mu_dtype=d), "mu_dtype"),
        (lambda d: optix.muon(0.1, mu_dtype=d), "mu_dtype"),
    ],
)
def test_integer_or_bool_state_dtypes_are_refused_by_name(make, name):
    for bad in (jnp.int32, jnp.bool_):
        with pytest.raises(TypeError, match=name):
            make(bad).init({"w": jnp.ones((4, 3))})


def test_shampoo_names_a_gradient_of_another_shape():
    tx = optix.scale_by_shampoo(block_size=2)
    state = tx.init({"w": jnp.ones((4, 3)), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match="'w' has shape \\(3, 4\\)"):
        tx.update({"w": jnp.ones((3, 4)), "b": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match="'b'"):
        tx.update({"w": jnp.ones((4, 3)), "b": jnp.ones(4)}, state)
