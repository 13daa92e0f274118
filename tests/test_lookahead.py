"""lookahead against a NumPy transcription of the algorithm (Zhang et al. 2019, Algorithm 1).

The reference runs the paper's loop directly: ``k`` fast steps of SGD or Adam (written out in
NumPy; its state carries over synchronisations), then ``phi += alpha * (theta - phi)`` and
``theta = phi``. optix runs the same noisy quadratic for ``N_STEPS`` steps, in float64 (the
``x64`` fixture), and the params (the fast weights) and ``averaged_params`` (the slow weights)
must agree at every step.

Tolerance: ``rtol=1e-10``, ``atol=1e-12``. Both sides evaluate the same float64 formulas in a
different order, a few ulps (1e-16) per step; the quadratic's dynamics contract, so the
differences do not grow beyond about 1e-14. A synchronisation one step early or late, or a reset
to the wrong weights, moves the params by a whole fast step (1e-2).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix.wrappers._average import averaged_params
from optix.wrappers._lookahead import LookaheadState
from optix.wrappers._lookahead import lookahead
from tests.cases import CASES
from tests.cases import IDS
from tests.problems import NOISY_SHAPES
from tests.problems import noisy_quadratic

N_STEPS = 120
SHAPES = NOISY_SHAPES


def _problem(seed: int = 0):
    return noisy_quadratic(N_STEPS, seed)


def _grad(curvature, target, params, noise, xp=np):
    return {k: curvature[k] * (params[k] - target[k]) + noise[k] for k in params}


def _numpy_sgd(lr):
    def step(g, state):
        return {k: -lr * v for k, v in g.items()}, state

    return step, None


def _numpy_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    def step(g, state):
        m, v, t = state
        t += 1
        m = {k: b1 * m[k] + (1 - b1) * g[k] for k in g}
        v = {k: b2 * v[k] + (1 - b2) * g[k] ** 2 for k in g}
        u = {k: -lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps) for k in g}
        return u, (m, v, t)

    zeros = {k: np.zeros(s) for k, s in SHAPES.items()}
    return step, (zeros, zeros, 0)


def _reference(fast, k, alpha, seed):
    """The paper's loop: (fast weights, slow weights) after every step."""
    curvature, target, noise, p0 = _problem(seed)
    step, state = fast
    theta = dict(p0)
    phi = dict(p0)
    out = []
    for t in range(1, N_STEPS + 1):
        u, state = step(_grad(curvature, target, theta, noise[t - 1]), state)
        theta = {key: theta[key] + u[key] for key in theta}
        if t % k == 0:
            phi = {key: phi[key] + alpha * (theta[key] - phi[key]) for key in phi}
            theta = dict(phi)
        out.append((theta, phi))
    return out


def _run(tx, seed, dtype=jnp.float64):
    curvature, target, noise, p0 = _problem(seed)
    a = {k: jnp.asarray(v, dtype) for k, v in curvature.items()}
    b = {k: jnp.asarray(v, dtype) for k, v in target.items()}
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, n):
        grads = _grad(a, b, params, n)
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    params = {k: jnp.asarray(v, dtype) for k, v in p0.items()}
    state = tx.init(params)
    out = []
    for n in noise:
        params, state = step(params, state, {k: jnp.asarray(v, dtype) for k, v in n.items()})
        out.append((params, state))
    return out


@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("sgd", lambda: optix.sgd(0.1), lambda: _numpy_sgd(0.1)),
        ("adam", lambda: optix.adam(0.05), lambda: _numpy_adam(0.05)),
    ],
)
@pytest.mark.parametrize("k, alpha", [(5, 0.5), (3, 0.8), (1, 0.3)])
def test_matches_numpy_transcription(x64, name, ours, theirs, k, alpha):
    run = _run(lookahead(ours(), k, alpha), seed=k)
    ref = _reference(theirs(), k, alpha, seed=k)
    read = jax.jit(averaged_params)
    for t, ((params, state), (theta, phi)) in enumerate(zip(run, ref, strict=True), start=1):
        slow = read(state)
        assert int(state.count) == t % k
        for key in SHAPES:
            assert params[key].dtype == jnp.float64
            err = f"{name}: step {t}, {key}"
            np.testing.assert_allclose(params[key], theta[key], rtol=1e-10, atol=1e-12, err_msg=err)
            np.testing.assert_allclose(slow[key], phi[key], rtol=1e-10, atol=1e-12, err_msg=err)
            if t % k == 0:  # right after a synchronisation the params are the slow weights, up to
                # the rounding of ``theta + (phi - theta)`` (an ulp of the params)
                np.testing.assert_allclose(params[key], slow[key], rtol=1e-15, atol=1e-15)


def _run_optax(fast, k, alpha, reset_state, seed):
    """optax.lookahead on the same problem: its params hold both the fast and the slow weights."""
    curvature, target, noise, p0 = _problem(seed)
    tx = optax.lookahead(fast, k, alpha, reset_state=reset_state)

    @jax.jit
    def step(params, state, n):
        grads = _grad(curvature, target, params.fast, n)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = optax.LookaheadParams.init_synced({k: jnp.asarray(v) for k, v in p0.items()})
    state = tx.init(params)
    out = []
    with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict promotion
        for n in noise:
            params, state = step(params, state, {k: jnp.asarray(v) for k, v in n.items()})
            out.append(params)
    return out


@pytest.mark.parametrize("reset_state", [True, False])
@pytest.mark.parametrize("k", [3, 5])
def test_reset_state_matches_optax(x64, reset_state, k):
    """``reset_state=True`` restarts Adam's moments and count at every synchronisation, as
    ``optax.lookahead`` does; fast and slow weights agree with optax's at every step."""
    ours = _run(lookahead(optix.adam(0.05), k, 0.5, reset_state=reset_state), seed=k)
    theirs = _run_optax(optax.adam(0.05), k, 0.5, reset_state, seed=k)
    read = jax.jit(averaged_params)
    for t, ((params, state), other) in enumerate(zip(ours, theirs, strict=True), start=1):
        slow = read(state)
        for key in SHAPES:
            err = f"reset_state={reset_state}: step {t}, {key}"
            np.testing.assert_allclose(
                params[key], other.fast[key], rtol=1e-10, atol=1e-12, err_msg=err
            )
            np.testing.assert_allclose(
                slow[key], other.slow[key], rtol=1e-10, atol=1e-12, err_msg=err
            )
        if reset_state and t % k == 0:  # the fast state is fresh: Adam's count is 0 again
            assert int(state.inner_state[0].hyperparams.count) == 0


def test_reset_state_changes_the_trajectory_and_keeps_set_hyperparams(x64):
    kept = _run(lookahead(optix.adam(0.05), 3, 0.5), seed=1)
    reset = _run(lookahead(optix.adam(0.05), 3, 0.5, reset_state=True), seed=1)
    gap = max(float(np.max(np.abs(kept[-1][0][k] - reset[-1][0][k]))) for k in SHAPES)
    assert gap > 1e-3  # the option does something
    tx = lookahead(optix.sgd(0.1, momentum=0.9), 2, 0.5, reset_state=True)
    params = {"w": jnp.ones(3)}
    state = optix.set_hyperparams(tx.init(params), learning_rate=0.01)
    for _ in range(2):  # the second step synchronises and resets the fast state
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        params = optix.apply_updates(params, updates)
    assert int(state.count) == 0
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.01)
    assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(state.inner_state[0].trace))
    with pytest.raises(TypeError, match="reset_state"):
        lookahead(optix.sgd(0.1), 2, 0.5, reset_state=1)


def test_alpha_one_is_the_fast_optimizer_and_alpha_zero_restarts(x64):
    plain = _run(optix.adam(0.05), seed=3)
    one = _run(lookahead(optix.adam(0.05), 4, 1.0), seed=3)
    zero = _run(lookahead(optix.adam(0.05), 4, 0.0), seed=3)
    p0 = _problem(3)[3]
    for t in range(N_STEPS):
        for key in SHAPES:
            np.testing.assert_allclose(one[t][0][key], plain[t][0][key], rtol=1e-12, atol=1e-14)
            if (t + 1) % 4 == 0:
                np.testing.assert_allclose(zero[t][0][key], p0[key], rtol=1e-14, atol=1e-15)
    assert max(float(np.max(np.abs(zero[5][0][k] - p0[k]))) for k in SHAPES) > 1e-3


def test_bf16_params_keep_their_dtype_and_float32_slow_weights():
    tx = lookahead(optix.adam(0.05), 3, 0.5)
    run = _run(tx, seed=4, dtype=jnp.bfloat16)
    for t, (params, state) in enumerate(run, start=1):
        assert all(params[k].dtype == jnp.bfloat16 for k in SHAPES)
        assert all(state.slow[k].dtype == jnp.float32 for k in SHAPES)
        if t % 3 == 0:
            synced = averaged_params(state, params)
            for k in SHAPES:
                assert synced[k].dtype == jnp.bfloat16
                # the params are the slow weights, to bf16's resolution (one rounding of the
                # update, one of the sum)
                np.testing.assert_allclose(
                    np.asarray(params[k].astype(jnp.float32)),
                    np.asarray(state.slow[k]),
                    rtol=2.0**-7,
                    atol=1e-3,
                )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_optimizer_as_fast_runs_jitted_without_recompiling(case):
    tx = lookahead(case.make(), sync_period=2, slow_step_size=0.5)
    params = {"s": jnp.ones([]), "v": jnp.linspace(-1.0, 1.0, 3), "m": [jnp.ones((2, 3))]}
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    signature = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])  # noqa: E731
    state = tx.init(params)
    assert signature(jax.eval_shape(tx.init, shapes)) == signature(state)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    for _ in range(2):
        params, state = step(params, state)
    state = optix.set_hyperparams(state, learning_rate=1e-3, slow_step_size=0.8)
    params, state = step(params, state)
    assert signature(state) == signature(tx.init(params))
    chex.assert_tree_all_finite(params)


def test_extra_arguments_reach_a_fast_optimizer_that_takes_them():
    seen = []

    def record(updates, state, params=None, **extra):
        seen.append(extra)
        return updates, state

    def plain(updates, state, params=None):
        return updates, state

    params = jnp.ones(2)
    for update in (record, plain):
        tx = lookahead(optix.GradientTransformation(lambda p: optix.EmptyState(), update), 2, 0.5)
        tx.update(params, tx.init(params), params, value=3.0)
    assert seen == [{"value": 3.0}]


def test_state_layout_and_hyperparams():
    params = {"w": jnp.ones(3)}
    state = lookahead(optix.sgd(0.1), 5, 0.5).init(params)
    assert isinstance(state, LookaheadState)
    assert int(state.count) == 0
    hp = optix.get_hyperparams(state)
    assert float(hp["slow_step_size"]) == 0.5 and float(hp["learning_rate"]) == pytest.approx(0.1)


def test_invalid_arguments():
    sgd = optix.sgd(0.1)
    with pytest.raises(ValueError, match="`sync_period` must be >= 1"):
        lookahead(sgd, 0, 0.5)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="`sync_period` must be an integer"):
            lookahead(sgd, bad, 0.5)
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match=r"`slow_step_size` must be in \[0, 1\]"):
            lookahead(sgd, 5, bad)
    with pytest.raises(TypeError, match="`fast` is a .*not a gradient transformation"):
        lookahead(optix.sgd, 5, 0.5)
    tx = lookahead(sgd, 5, 0.5)
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="`lookahead` needs the current parameters"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="structure"):
        tx.update({"v": jnp.ones(3)}, tx.init(params), {"v": jnp.ones(3)})


def test_complex_params(x64):
    rng = np.random.default_rng(8)
    p0 = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    grads = [rng.standard_normal(3) + 1j * rng.standard_normal(3) for _ in range(12)]
    tx = lookahead(optix.sgd(0.1), 4, 0.5)
    update = jax.jit(tx.update)
    params = jnp.asarray(p0)
    state = tx.init(params)
    theta, phi = p0, p0
    for t, g in enumerate(grads, start=1):  # open-loop gradients: the transcription is exact
        updates, state = update(jnp.asarray(g), state, params)
        params = optix.apply_updates(params, updates)
        theta = theta - 0.1 * g
        if t % 4 == 0:
            phi = phi + 0.5 * (theta - phi)
            theta = phi
        assert params.dtype == jnp.complex128
        np.testing.assert_allclose(params, theta, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(averaged_params(state), phi, rtol=1e-12, atol=1e-14)
