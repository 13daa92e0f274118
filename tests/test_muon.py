"""Muon: where it differs from optax and torch, conv kernels, layouts, labels, complex matrices.

Muon's step-by-step comparisons with optax.contrib.muon and torch.optim.Muon, and Shampoo's and
SOAP's with NumPy transcriptions of the papers' algorithm boxes, are entries of the reference
registry, ``tests/references.py``: teacher-forced float64 comparisons over 120 steps on the
scalar/vector/matrix pytree of :mod:`tests.reference` (Muon against torch: on matrices only, as
torch.optim.Muon accepts nothing else).

Tolerances. Muon (optax, and torch with its bfloat16 cast removed): ``rtol = 1e-10`` as in
``tests/reference.py``: the same float64 polynomial evaluated in a different order. Shampoo and
SOAP: ``rtol = 1e-9, atol = 1e-11 * max|update|``. Both sides take eigendecompositions of the
same float64 statistics with different LAPACK drivers (NumPy's vs. XLA's), which agree on
eigenvectors to about ``machine_eps * ||S|| / gap``; the Shampoo statistics there reach condition
numbers of about 1e9 (gradients of 1e-3 to 30, ``eps = 1e-6``, rank-deficient ``G^T G`` early
on), and an inverse fourth root of such a matrix carries that into the update. Observed: at most
1.0e-12 of the leaf's largest update for Shampoo, 2.2e-15 for SOAP, 8e-15 for Muon against optax
and 7e-14 against torch. A convention mismatch (a root exponent, the refresh step, the first-step
skip, the order of the V permutation, eps inside or outside a root) is a relative difference of
1e-3 or more.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix.optimizers._muon_family import muon_labels
from optix.transforms._orthogonalize import newton_schulz
from tests.reference import N_STEPS
from tests.reference import matrix_streams
from tests.reference import run_against_torch
from tests.reference import run_teacher_forced
from tests.transcriptions import optax_muon

torch = pytest.importorskip("torch")


# ---------------------------------------------------------------------------------------------
# Muon
# ---------------------------------------------------------------------------------------------


def test_muon_default_differs_from_optax_by_bias_correction(x64):
    """optix's default momentum is Jordan's and torch's (no bias correction): optax's differs."""
    with pytest.raises(AssertionError, match="muon default"):
        run_teacher_forced(optix.muon(0.02, eps=1e-8), optax_muon(0.02), "muon default")


def test_muon_differs_from_torch_by_its_bfloat16_newton_schulz(x64):
    """Unpatched torch runs Newton-Schulz in bfloat16 (8 bits of mantissa, 4e-3 relative per
    operation, amplified by five iterations whose coefficients reach 4.8): optix computes in
    float32 or wider, so the two agree to about a tenth of the step (7e-2 observed), not to
    float64 precision."""
    ours = optix.muon(0.02, layout="out_in", weight_decay=0.1)
    worst = run_against_torch(
        ours,
        lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.1),
        "muon vs torch",
        streams=matrix_streams,
        rtol=0.0,
        check=False,
        steps=30,
    )
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
    rows, cols = (18, 5) if layout == "in_out" else (5, 18)  # the default 2-D view
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


def _numpy_complex_muon_step(g, p, s, t, lr=0.02, wd=0.1, adam_wd=0.01, beta=0.95):
    """One step of optix.muon's default conventions, transcribed in NumPy for complex leaves:
    Nesterov EMA momentum without bias correction, Newton-Schulz (Jordan's quintic, 5 steps)
    with ``A = X X^H`` after ``X / max(||X||_F, 1e-7)`` (on ``X^H`` for a tall matrix), the scale
    ``sqrt(max(1, fan_out / fan_in))`` and decoupled decay on the matrices; AdamW with
    ``v = b2 v + (1 - b2) |g|^2`` on the other leaves. ``s`` (a dict) is updated in place."""
    out = {}
    for k, gk in g.items():
        m = s.setdefault(k + "/m", np.zeros_like(gk))
        if gk.ndim == 2:
            m = s[k + "/m"] = beta * m + (1 - beta) * gk
            x = beta * m + (1 - beta) * gk
            tall = x.shape[0] > x.shape[1]
            x = x.conj().T if tall else x
            x = x / max(np.linalg.norm(x), 1e-7)
            for _ in range(5):
                a = x @ x.conj().T
                x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
            o = x.conj().T if tall else x
            scale = math.sqrt(max(1.0, gk.shape[1] / gk.shape[0]))
            out[k] = -lr * (scale * o + wd * p[k])
        else:
            v = s.setdefault(k + "/v", np.zeros(gk.shape))
            m = s[k + "/m"] = 0.9 * m + 0.1 * gk
            v = s[k + "/v"] = 0.999 * v + 0.001 * np.abs(gk) ** 2
            u = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
            out[k] = -lr * (u + adam_wd * p[k])
    return out


def test_muon_on_complex_leaves_matches_a_numpy_transcription(x64):
    """optix.muon's defaults on a complex tree (a tall and a wide matrix, a vector, a scalar),
    teacher-forced over ``N_STEPS`` complex128 steps against the transcription above: the
    matrices take Newton-Schulz with the conjugate transpose, the rest complex AdamW."""
    shapes = {"tall": (5, 3), "wide": (2, 6), "b": (4,), "s": ()}
    streams = {
        k: (_complex_stream(i, sh), _complex_stream(10 + i, sh))
        for i, (k, sh) in enumerate(shapes.items())
    }
    tx = optix.muon(0.02, weight_decay=0.1, adam_weight_decay=0.01)
    state = tx.init({k: jnp.asarray(v[1][0]) for k, v in streams.items()})
    step = jax.jit(tx.update)
    ref_state: dict = {}
    for t in range(N_STEPS):
        g = {k: v[0][t] for k, v in streams.items()}
        p = {k: v[1][t] for k, v in streams.items()}
        u, state = step(
            {k: jnp.asarray(x) for k, x in g.items()},
            state,
            {k: jnp.asarray(x) for k, x in p.items()},
        )
        want = _numpy_complex_muon_step(g, p, ref_state, t + 1)
        for k in shapes:
            assert u[k].dtype == jnp.complex128
            scale = float(np.abs(want[k]).max())
            np.testing.assert_allclose(
                u[k], want[k], rtol=1e-10, atol=1e-13 * scale, err_msg=f"step {t}, leaf {k}"
            )


@pytest.mark.parametrize("shape", [(16, 8), (8, 16)])
def test_orthogonalised_complex_matrices_have_unit_singular_values(shape, x64):
    """A complex momentum of condition number 100: Jordan's quintic puts its singular values in
    [0.68, 1.2] (not 1: the coefficients trade convergence for speed); eight Polar Express steps
    reach the polar factor ``U V^H`` itself, phases included."""
    rng = np.random.default_rng(3)
    n = min(shape)
    q1, _ = np.linalg.qr(
        rng.standard_normal((max(shape), n)) + 1j * rng.standard_normal((max(shape), n))
    )
    q2, _ = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    g = (q1 * np.logspace(0, -2, n)) @ q2.conj().T
    g = g if shape[0] > shape[1] else g.T
    uu, _, vh = np.linalg.svd(g, full_matrices=False)

    def orthogonalised(**kw):
        tx = optix.scale_by_muon(beta=0.0, nesterov=False, scale_mode="none", **kw)
        u, _ = tx.update({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))
        assert u["w"].dtype == jnp.complex128
        return np.asarray(u["w"])

    sv = np.linalg.svd(orthogonalised(), compute_uv=False)
    assert np.all((sv > 0.68) & (sv < 1.2)), sv
    polar = orthogonalised(orthogonalize="polar_express", ns_steps=8)
    np.testing.assert_allclose(polar, uu @ vh, atol=1e-10)


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


# ---------------------------------------------------------------------------------------------
# SOAP: NumPy transcription of Vyas et al. 2024, Algorithm 3 (one step of SOAP on an m x n layer)
# with Algorithm 4 (basis refresh: one power-iteration step, then QR), and the authors' code's
# details that the paper leaves implicit: the first step only gathers L, R and takes Q = eigh
# eigenvectors in decreasing order; bias correction counts the steps after it; before each
# refresh the columns of Q are sorted by q^T L q (decreasing) and V is permuted the same way.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Blocks, edge cases, dtypes and optax's state utilities
# ---------------------------------------------------------------------------------------------


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


def test_muon_labels_ndim_rule_with_pattern_override():
    from optix.optimizers._muon_family import muon_labels

    tree = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2), "emb": jnp.zeros((9, 2))}
    assert muon_labels(tree, {"emb": "adam"}) == {"b": "adam", "emb": "adam", "w": "muon"}


# ---------------------------------------------------------------------------------------------
# Orthogonalisers: Polar Express, AOL / Schatten preconditioning, a user's callable
# ---------------------------------------------------------------------------------------------


def _test_matrix(rng, shape, cond=None):
    a = rng.standard_normal(shape)
    if cond is None:
        return a
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return (u * np.logspace(0, -math.log10(cond), min(shape))) @ vt


def _max_sigma_error(o):
    s = np.linalg.svd(np.asarray(o.astype(jnp.float32), np.float64), compute_uv=False)
    return float(np.max(np.abs(s - 1)))


@pytest.mark.parametrize("shape", [(64, 32), (128, 128), (256, 64)])
@pytest.mark.parametrize("cond", [None, 1e2, 1e3])
def test_muon_polar_express_in_bfloat16_is_no_worse_than_jordan_coefficients(shape, cond):
    """Five steps on a bfloat16 matrix: max |sigma - 1| (singular values in float64) is at most
    the default coefficients'. Observed: 0.18-0.76 against 0.34-0.87."""
    from optix.transforms._orthogonalize import polar_express

    x = jnp.asarray(_test_matrix(np.random.default_rng(len(shape) + shape[0]), shape, cond))
    x = x.astype(jnp.bfloat16)
    pe, ns = polar_express(x), newton_schulz(x)
    assert pe.dtype == jnp.bfloat16
    assert _max_sigma_error(pe) <= _max_sigma_error(ns)


def test_muon_polar_express_iteration_equals_a_numpy_transcription(x64):
    from optix.transforms._orthogonalize import polar_express
    from optix.transforms._orthogonalize import polar_express_coeffs
    from tests.transcriptions import numpy_polar_express

    rng = np.random.default_rng(5)
    for shape, steps in [((6, 9), 5), ((12, 5), 5), ((8, 8), 10), ((7, 3), 2)]:
        for cond in (None, 1e3):
            a = _test_matrix(rng, shape, cond)
            got = np.asarray(polar_express(jnp.asarray(a), steps))
            np.testing.assert_allclose(got, numpy_polar_express(a, steps), rtol=0, atol=1e-10)
    # ten steps converge to the polar factor U V^T
    a = _test_matrix(rng, (10, 6), 100.0)
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(polar_express(jnp.asarray(a), 10), u @ vt, atol=1e-8)
    # the schedule: the paper's triples over (1.01, 1.01^3, 1.01^5), then the last one unscaled
    c = polar_express_coeffs(9)
    assert c[0] == pytest.approx(
        (8.28721201814563 / 1.01, -23.595886519098837 / 1.01**3, 17.300387312530933 / 1.01**5),
        rel=1e-15,
    )
    assert c[7:] == [(1.875, -1.25, 0.375)] * 2


def test_muon_aol_and_schatten_preconditionings_match_their_definitions(x64):
    """optax's ``preconditioning="aol"/"schatten"``: the first step's X and X X^T rescaled
    (rows by (sum_j |X X^T|_ij)^{-1/2}; by the Schatten-4 norm), no Frobenius normalisation."""
    rng = np.random.default_rng(2)
    a, b, c = 3.4445, -4.7750, 2.0315
    for shape in [(5, 8), (9, 4)]:
        g = rng.standard_normal(shape)
        x = g.T if shape[0] > shape[1] else g
        gram = x @ x.T
        d = 1 / np.sqrt(np.abs(gram).sum(axis=1))
        aol = [d[:, None] * x, d[:, None] * gram * d[None, :]]
        s4 = np.sqrt(np.linalg.norm(gram))
        schatten = [x / s4, gram / s4**2]
        for name, (x1, g1) in [("aol", aol), ("schatten", schatten)]:
            y = a * x1 + (b * g1 + c * g1 @ g1) @ x1
            for _ in range(4):
                gg = y @ y.T
                y = a * y + (b * gg + c * gg @ gg) @ y
            want = y.T if shape[0] > shape[1] else y
            got = newton_schulz(jnp.asarray(g), preconditioning=name)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            # and through muon: the first update is s * orth(0.05 g) (Nesterov, EMA)
            tx = optix.scale_by_muon(orthogonalize=name)
            u, _ = tx.update({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))
            scale = math.sqrt(max(1.0, shape[1] / shape[0]))
            np.testing.assert_allclose(
                u["w"],
                scale * np.asarray(newton_schulz(jnp.asarray(0.0975 * g), preconditioning=name)),
                rtol=1e-10,
            )


def _exact_polar(x):
    u, _, vh = jnp.linalg.svd(x, full_matrices=False)
    return u @ vh


def test_muon_takes_a_user_orthogonaliser_under_jit_on_a_stacked_leaf(x64):
    """An exact polar factor by SVD, on a (3, 6, 4) stack with batch_axes=(0,): each matrix's
    update is s * U V^T of its own Nesterov momentum, jitted and donated, traced once."""
    import chex

    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.standard_normal((3, 6, 4))), "b": jnp.zeros(4)}
    calls = []

    def orth(x):
        calls.append(x.shape)
        return _exact_polar(x)

    tx = optix.muon(
        0.1,
        orthogonalize=orth,
        matrix_spec={"w": optix.MatrixSpec(batch_axes=(0,))},
        scale_mode="none",
    )
    state = tx.init(params)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, g):
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state, u

    step = jax.jit(step, donate_argnums=(0, 1))
    mom = np.zeros((3, 6, 4))
    for _ in range(3):
        g = {"w": jnp.asarray(rng.standard_normal((3, 6, 4))), "b": jnp.ones(4)}
        params, state, u = step(params, state, g)
        mom = 0.95 * mom + 0.05 * np.asarray(g["w"])
        nest = 0.95 * mom + 0.05 * np.asarray(g["w"])
        for i in range(3):
            uu, _, vt = np.linalg.svd(nest[i], full_matrices=False)
            np.testing.assert_allclose(u["w"][i], -0.1 * uu @ vt, rtol=1e-9, atol=1e-12)
    assert calls == [(3, 6, 4)]  # one stack of three matrices, traced once


def test_muon_orthogonalize_errors_name_the_argument():
    with pytest.raises(ValueError, match="`orthogonalize` must be one of"):
        optix.muon(0.02, orthogonalize="svd")
    with pytest.raises(ValueError, match="`orthogonalize` must be one of"):
        optix.scale_by_muon(orthogonalize=3)
    with pytest.raises(ValueError, match="ns_coeffs"):
        optix.muon(0.02, orthogonalize="polar_express", ns_coeffs=(2.0, -1.5, 0.5))
    tx = optix.muon(0.02, orthogonalize=lambda x: x[..., :2])
    params = {"w": jnp.ones((4, 3))}
    with pytest.raises(ValueError, match="`orthogonalize`.*shaped like its input stack"):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("name", ["newton_schulz", "polar_express", "aol", "schatten"])
def test_muon_orthogonalisers_treat_a_stack_as_independent_matrices(x64, name):
    from optix.optimizers._muon import orthogonalizer

    orth = orthogonalizer(name)
    x = jnp.asarray(np.random.default_rng(4).standard_normal((3, 7, 5)))
    x = x * jnp.asarray([1.0, 1e-3, 50.0])[:, None, None]
    got = orth(x, 1e-7)
    for i in range(3):
        np.testing.assert_allclose(got[i], orth(x[i][None], 1e-7)[0], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# NorMuon (its step-by-step check is the registry's numpy:normuon entries)
# ---------------------------------------------------------------------------------------------


def test_normuon_stack_equals_independent_matrices_and_out_in_transposes(x64):
    """A (3, 8, 5) stack with batch_axes=(0,) equals three 2-D runs over 20 steps; with
    layout="out_in" the neurons are the rows, so a transposed run gives the transposed updates."""
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal((3, 8, 5)) for _ in range(20)]
    spec = {"w": optix.MatrixSpec(batch_axes=(0,))}
    stacked = optix.scale_by_normuon(b2=0.9, matrix_spec=spec)
    single = optix.scale_by_normuon(b2=0.9)
    out_in = optix.scale_by_normuon(b2=0.9, layout="out_in")
    s = stacked.init({"w": jnp.zeros((3, 8, 5))})
    singles = [single.init({"w": jnp.zeros((8, 5))}) for _ in range(3)]
    s_t = out_in.init({"w": jnp.zeros((5, 8))})
    assert s.nu["w"].shape == (3, 1, 5) and s_t.nu["w"].shape == (1, 1, 5)
    for g in grads:
        u, s = stacked.update({"w": jnp.asarray(g)}, s)
        for i in range(3):
            ui, singles[i] = single.update({"w": jnp.asarray(g[i])}, singles[i])
            np.testing.assert_allclose(u["w"][i], ui["w"], rtol=1e-6, atol=1e-12)
        ut, s_t = out_in.update({"w": jnp.asarray(g[0].T)}, s_t)
        np.testing.assert_allclose(ut["w"].T, u["w"][0], rtol=1e-6, atol=1e-12)
        # every matrix's update has RMS rms_scale = 0.2
        np.testing.assert_allclose(jnp.sqrt(jnp.mean(u["w"] ** 2, axis=(1, 2))), 0.2, rtol=1e-9)


def test_normuon_zero_gradient_gives_a_zero_update_and_errors_name_arguments():
    tx = optix.normuon(0.1, orthogonalize="polar_express")
    params = {"w": jnp.ones((4, 3))}
    u, _ = tx.update({"w": jnp.zeros((4, 3))}, tx.init(params), params)
    assert bool(jnp.all(u["w"] == 0))
    with pytest.raises(ValueError, match="`orthogonalize`"):
        optix.normuon(0.1, orthogonalize="qr")
    with pytest.raises(ValueError, match="b2"):
        optix.normuon(0.1, b2=1.5)
    with pytest.raises(ValueError, match="scale_by_normuon"):
        optix.scale_by_normuon().init({"b": jnp.zeros(3)})
