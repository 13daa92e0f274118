"""Schedule-free SGD/AdamW, Prodigy and D-Adapt AdamW against optax and the authors' algorithms.

Teacher-forced float64 comparisons (``tests/reference.py``: 120 steps on a scalar/vector/matrix
pytree, gradients from 1e-3 to 30 with an all-zero step) run at the default tolerance,
``rtol=1e-10`` with ``atol=1e-13 * max|update|``. Schedule-free's update reads the params it is
given (``x`` is recovered from them and ``z``), and Prodigy's reads ``x_0 - x_t``; both sides get
the same params every step, so teacher forcing compares the same function of the same inputs.

Deliberate differences, each shown below: schedule-free warmup (optix uses ``gamma_t`` for the
``z`` step and the averaging weight, as the authors' code; optax's step uses ``gamma_{t-1}``), and
the all-zero-gradient start of Prodigy / D-Adapt (optax divides 0 by 0 and never recovers).
"""

from __future__ import annotations

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
    params_stream,
    run_teacher_forced,
)

MASK = {"scalar": False, "vector": True, "matrix": True}


def _lr_schedule(count):
    return 1.0 - 0.5 * jnp.minimum(count, 100).astype(float) / 100


SF_CASES = {
    "sgd": (
        lambda: optix.schedule_free_sgd(0.3, b1=0.5, weight_decay=0.01, weight_lr_power=1.0),
        lambda: optax.contrib.schedule_free_sgd(
            0.3, b1=0.5, weight_decay=0.01, weight_lr_power=1.0
        ),
    ),
    "adamw": (
        lambda: optix.schedule_free_adamw(0.01, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_adamw(0.01, weight_decay=0.01),
    ),
    "adamw_b": (
        lambda: optix.schedule_free_adamw(0.1, b1=0.95, b2=0.99, eps=1e-3),
        lambda: optax.contrib.schedule_free_adamw(0.1, b1=0.95, b2=0.99, eps=1e-3),
    ),
}

PF_CASES = {
    "prodigy": (lambda: optix.prodigy(), lambda: optax.contrib.prodigy()),
    "prodigy_wd_schedule": (
        lambda: optix.prodigy(_lr_schedule, weight_decay=0.05),
        lambda: optax.contrib.prodigy(_lr_schedule, weight_decay=0.05),
    ),
    "prodigy_safeguard_beta3": (
        lambda: optix.prodigy(b1=0.8, beta3=0.9, estim_lr_coef=2.0, safeguard_warmup=True),
        lambda: optax.contrib.prodigy(
            betas=(0.8, 0.999), beta3=0.9, estim_lr_coef=2.0, safeguard_warmup=True
        ),
    ),
    "dadapt_adamw_wd_schedule": (
        lambda: optix.dadapt_adamw(_lr_schedule, b2=0.99, weight_decay=0.05, estim_lr0=1e-3),
        lambda: optax.contrib.dadapt_adamw(
            _lr_schedule, betas=(0.9, 0.99), weight_decay=0.05, estim_lr0=1e-3
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(SF_CASES))
def test_schedule_free_matches_optax(x64, name):
    ours, theirs = SF_CASES[name]
    run_teacher_forced(ours(), theirs(), f"schedule_free_{name}", seed=3)


@pytest.mark.parametrize("name", sorted(PF_CASES))
def test_parameter_free_matches_optax(x64, name):
    ours, theirs = PF_CASES[name]
    run_teacher_forced(ours(), theirs(), name, seed=4)


@pytest.mark.parametrize("which", ["sgd", "adamw"])
def test_schedule_free_warmup_follows_reference_code_not_optax(x64, which):
    """With warmup ``W``, the authors' code uses ``gamma_t = lr * min(1, t / W)`` (t = 1, 2, ...)
    for both the z step and the averaging weight. optax's ``warmup_steps`` gives its base
    optimizer ``gamma_{t-1}`` (0 on the first step) and its weights ``gamma_t``. Building optax's
    wrapper with the reference schedule on both sides reproduces optix exactly."""
    lr, warmup = 0.2, 10

    def base_lr(count):  # optax's base optimizer reads the 0-based count
        return lr * jnp.minimum(1.0, (count + 1).astype(float) / warmup)

    def weight_lr(step):  # optax's wrapper reads a 1-based step
        return lr * jnp.minimum(1.0, step.astype(float) / warmup)

    if which == "sgd":
        ours = optix.schedule_free_sgd(lr, warmup_steps=warmup)
        base = optax.sgd(base_lr)
        plain = optax.contrib.schedule_free_sgd(lr, warmup_steps=warmup)
    else:
        ours = optix.schedule_free_adamw(lr, warmup_steps=warmup, weight_decay=0.01)
        base = optax.chain(
            optax.scale_by_rms(0.999, 1e-8, eps_in_sqrt=False, bias_correction=True),
            optax.add_decayed_weights(0.01),
            optax.scale_by_learning_rate(base_lr),
        )
        plain = optax.contrib.schedule_free_adamw(lr, warmup_steps=warmup, weight_decay=0.01)
    reference = optax.contrib.schedule_free(base, weight_lr)
    run_teacher_forced(ours, reference, f"schedule_free_{which} warmup", seed=5)
    with pytest.raises(AssertionError, match="step 0"):
        run_teacher_forced(ours, plain, f"optax schedule_free_{which} warmup", seed=5)


def _closed_loop(tx, steps, seed=0):
    """Train on a noisy quadratic; return the per-step (params, eval params, z) in float64."""
    rng = np.random.default_rng(seed)
    a = {k: jnp.asarray(np.exp(rng.uniform(-1, 1, s))) for k, s in SHAPES.items()}
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    history = []
    for _ in range(steps):
        grads = jax.tree.map(lambda ai, p: ai * p + 0.1, a, params)
        updates, state = update(grads, state, params)
        params = optix.apply_updates(params, updates)
        history.append((params, optix.schedule_free_eval_params(state, params), state.z))
    return history, state


def test_eval_params_are_the_weighted_average_of_z(x64):
    """Paper eq. (x update) unrolled: ``x_T = sum_t w_t z_t / sum_t w_t`` with ``w_t =
    max_{i<=t} gamma_i^r`` over the warmup, and ``y_t = beta_1 x_t + (1 - beta_1) z_t``."""
    lr, warmup, b1, power = 0.1, 7, 0.8, 2.0
    tx = optix.schedule_free_sgd(lr, warmup_steps=warmup, b1=b1, weight_lr_power=power)
    history, _ = _closed_loop(tx, 25)
    gammas = [lr * min(1.0, t / warmup) for t in range(1, 26)]
    weights = np.maximum.accumulate(np.array(gammas)) ** power
    for t, (y, x, z) in enumerate(history):
        for k in SHAPES:
            zs = np.stack([np.asarray(h[2][k]) for h in history[: t + 1]])
            w = weights[: t + 1].reshape((-1,) + (1,) * zs[0].ndim)
            np.testing.assert_allclose(x[k], np.sum(w * zs, 0) / w.sum(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(y[k], b1 * x[k] + (1 - b1) * z[k], rtol=1e-12, atol=1e-14)


def test_changing_b1_midway_keeps_the_averaged_sequence(x64):
    """x is recovered with the b1 that built the params, so set_hyperparams(b1=...) between steps
    keeps ``x_{t+1} = (1 - c) x_t + c z_{t+1}`` (here c = 1 / (t + 1): constant lr, power 2)."""
    tx = optix.schedule_free_sgd(0.1, b1=0.9)
    history, state = _closed_loop(tx, 5)
    params, x_before, _ = history[-1]
    state = optix.set_hyperparams(state, b1=0.5)
    grads = jax.tree.map(lambda p: 0.3 * p, params)
    updates, state = tx.update(grads, state, params)
    params = optix.apply_updates(params, updates)
    x_after = optix.schedule_free_eval_params(state, params)
    for k in SHAPES:
        expected = (5 / 6) * x_before[k] + (1 / 6) * state.z[k]
        np.testing.assert_allclose(x_after[k], expected, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(params[k], 0.5 * x_after[k] + 0.5 * state.z[k], rtol=1e-12)


def test_eval_params_found_in_nested_states_and_match_optax(x64):
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}
    grads = jax.tree.map(lambda p: 0.5 * p - 0.2, params)
    theirs = optax.contrib.schedule_free_adamw(0.05)
    t_state = theirs.init(params)
    nested = optix.skip_nonfinite(
        optix.chain(optix.clip_by_global_norm(100.0), optix.schedule_free_adamw(0.05))
    )
    n_state = nested.init(params)
    t_params = n_params = params
    t_update, n_update = jax.jit(theirs.update), jax.jit(nested.update)
    for _ in range(3):
        with jax.numpy_dtype_promotion("standard"):
            u, t_state = t_update(grads, t_state, t_params)
        t_params = optax.apply_updates(t_params, u)
        u, n_state = n_update(grads, n_state, n_params)
        n_params = optix.apply_updates(n_params, u)
    with jax.numpy_dtype_promotion("standard"):
        expected = optax.contrib.schedule_free_eval_params(t_state, t_params)
    got = optix.schedule_free_eval_params(n_state, n_params)
    for k in SHAPES:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-12)


def test_eval_params_in_a_partition_leave_other_leaves_alone():
    labels = {"scalar": "plain", "vector": "sf", "matrix": "sf"}
    tx = optix.partition({"sf": optix.schedule_free_sgd(0.1), "plain": optix.sgd(0.1)}, labels)
    params = {k: jnp.ones(s) for k, s in SHAPES.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(3):
        updates, state = update(jax.tree.map(jnp.ones_like, params), state, params)
        params = optix.apply_updates(params, updates)
    x = optix.schedule_free_eval_params(state, params)
    assert x["scalar"] is params["scalar"]
    assert not np.allclose(x["vector"], params["vector"])  # the average lags the params
    assert x["matrix"].dtype == params["matrix"].dtype

    two = optix.partition(
        {"sf": optix.schedule_free_sgd(0.1), "plain": optix.schedule_free_sgd(0.2)}, labels
    )
    state = two.init(params)
    with pytest.raises(ValueError, match="several schedule-free states"):
        optix.schedule_free_eval_params(state, params)
    x = optix.schedule_free_eval_params(state, params, path="plain")
    assert x["vector"] is params["vector"]
    with pytest.raises(ValueError, match="no schedule-free state"):
        optix.schedule_free_eval_params(optix.adam(1e-3).init(params), params)


def test_schedule_free_arguments_are_checked():
    with pytest.raises(ValueError, match="b1"):
        optix.schedule_free_sgd(b1=0.0)
    with pytest.raises(ValueError, match="b1"):
        optix.schedule_free_adamw(b1=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        optix.schedule_free_sgd(-1.0)
    with pytest.raises(ValueError, match="weight_lr_power"):
        optix.schedule_free_sgd(weight_lr_power=-1.0)
    with pytest.raises(ValueError, match="contains a learning rate"):
        optix.schedule_free(optix.sgd(0.1), learning_rate=0.1).init(jnp.zeros(2))
    state = optix.schedule_free_sgd().init(jnp.zeros(2))
    with pytest.raises(ValueError, match="b1"):
        optix.set_hyperparams(state, b1=0.0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        optix.schedule_free_sgd().update(jnp.ones(2), state)


def test_schedule_free_keeps_z_wide_for_low_precision_params():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    tx = optix.schedule_free_adamw(1e-3)
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones(3, jnp.bfloat16)}, state, params)
    assert state.z["w"].dtype == jnp.float32
    assert updates["w"].dtype == jnp.bfloat16
    assert optix.schedule_free_eval_params(state, params)["w"].dtype == jnp.bfloat16


# ---------------------------------------------------------------------------------------------
# Prodigy and D-Adaptation: the authors' algorithms, transcribed in NumPy (float64). Prodigy:
# Mishchenko & Defazio 2024, Algorithm 4 (the Adam version) with decoupled weight decay as in the
# authors' code; D-Adapt Adam: Defazio & Mishchenko 2023, Algorithm 5 (Adam D-Adaptation). The
# authors' code defaults to no bias correction; with it, it multiplies the step size by
# sqrt(1 - b2^t) / (1 - b1^t).


class _NumpyProdigy:
    def __init__(self, lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, wd=0.0, bias_correction=True):
        self.lr, self.b1, self.b2, self.eps, self.d0, self.wd = lr, b1, b2, eps, d0, wd
        self.beta3, self.bc = np.sqrt(b2), bias_correction

    def init(self, params):
        z = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        x0 = {k: np.asarray(v, np.float64).copy() for k, v in params.items()}
        return {"m": dict(z), "v": dict(z), "s": dict(z), "x0": x0, "d": self.d0, "r": 0.0, "t": 0}

    def update(self, g, st, x):
        g = {k: np.asarray(v) for k, v in g.items()}
        x = {k: np.asarray(v) for k, v in x.items()}
        t, d, b1, b2 = st["t"] + 1, st["d"], self.b1, self.b2
        eta = d * self.lr * (np.sqrt(1 - b2**t) / (1 - b1**t) if self.bc else 1.0)
        r = self.beta3 * st["r"] + (d / self.d0) * eta * sum(
            float(np.sum(g[k] * (st["x0"][k] - x[k]))) for k in g
        )
        m = {k: b1 * st["m"][k] + (1 - b1) * d * g[k] for k in g}
        v = {k: b2 * st["v"][k] + (1 - b2) * d**2 * g[k] ** 2 for k in g}
        s = {k: self.beta3 * st["s"][k] + (d / self.d0) * eta * g[k] for k in g}
        l1 = sum(float(np.sum(np.abs(s[k]))) for k in g)
        d_new = max(d, r / l1) if l1 > 0 else d
        steps = {
            k: jnp.asarray(-eta * (m[k] / (np.sqrt(v[k]) + d_new * self.eps) + self.wd * x[k]))
            for k in g
        }
        return steps, {**st, "m": m, "v": v, "s": s, "d": d_new, "r": r, "t": t}


class _NumpyDadaptAdam:
    def __init__(self, lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, wd=0.0, bias_correction=True):
        self.lr, self.b1, self.b2, self.eps, self.d0, self.wd = lr, b1, b2, eps, d0, wd
        self.bc = bias_correction

    def init(self, params):
        z = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        return {"m": dict(z), "v": dict(z), "s": dict(z), "d": self.d0, "r": 0.0, "t": 0}

    def update(self, g, st, x):
        g = {k: np.asarray(v) for k, v in g.items()}
        x = {k: np.asarray(v) for k, v in x.items()}
        t, d, b1, b2 = st["t"] + 1, st["d"], self.b1, self.b2
        sb2 = np.sqrt(b2)
        eta = d * self.lr * (np.sqrt(1 - b2**t) / (1 - b1**t) if self.bc else 1.0)
        inner = sum(float(np.sum(g[k] * st["s"][k] / (np.sqrt(st["v"][k]) + self.eps))) for k in g)
        r = sb2 * st["r"] + (1 - sb2) * eta * inner
        m = {k: b1 * st["m"][k] + (1 - b1) * eta * g[k] for k in g}
        v = {k: b2 * st["v"][k] + (1 - b2) * g[k] ** 2 for k in g}
        s = {k: sb2 * st["s"][k] + (1 - sb2) * eta * g[k] for k in g}
        l1 = sum(float(np.sum(np.abs(s[k]))) for k in g)
        d_new = max(d, r / ((1 - sb2) * l1)) if l1 > 0 else d
        steps = {
            k: jnp.asarray(-(m[k] / (np.sqrt(v[k]) + self.eps)) - self.wd * eta * x[k]) for k in g
        }
        return steps, {**st, "m": m, "v": v, "s": s, "d": d_new, "r": r, "t": t}


def _run_against_numpy(ours, theirs, what, seed):
    """``run_teacher_forced``'s loop with an eager NumPy side (it cannot be jitted)."""
    grads, params = gradient_stream(seed), params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    state_ours, state_theirs = ours.init(as_jax(params[0])), theirs.init(params[0])
    update = jax.jit(ours.update)
    for t in range(N_STEPS):
        u_ours, state_ours = update(as_jax(grads[t]), state_ours, as_jax(params[t]))
        u_theirs, state_theirs = theirs.update(grads[t], state_theirs, params[t])
        assert_updates_close(u_ours, u_theirs, t, what)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_prodigy_matches_the_papers_algorithm(x64, bias_correction):
    ours = optix.prodigy(weight_decay=0.02, bias_correction=bias_correction)
    theirs = _NumpyProdigy(wd=0.02, bias_correction=bias_correction)
    _run_against_numpy(ours, theirs, f"prodigy bc={bias_correction}", seed=6)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_dadapt_adamw_matches_the_papers_algorithm(x64, bias_correction):
    ours = optix.dadapt_adamw(weight_decay=0.02, bias_correction=bias_correction)
    theirs = _NumpyDadaptAdam(wd=0.02, bias_correction=bias_correction)
    _run_against_numpy(ours, theirs, f"dadapt bc={bias_correction}", seed=7)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_zero_first_gradient_keeps_d_where_optax_turns_nan(name):
    params = {"w": jnp.ones(3)}
    zero, one = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    ours = getattr(optix, name)()
    theirs = getattr(optax.contrib, name)()
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for g in (zero, one, one):
        u_ours, s_ours = update_ours(g, s_ours, params)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = update_theirs(g, s_theirs, params)
    assert bool(jnp.all(jnp.isfinite(u_ours["w"]))) and bool(jnp.isfinite(s_ours.d))
    assert float(s_ours.d) > 0
    assert not bool(jnp.all(jnp.isfinite(u_theirs["w"])))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_weight_decay_mask(name):
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in SHAPES.items()}
    grads = jax.tree.map(lambda p: 0.1 * p + 1.0, params)
    make = getattr(optix, name)
    runs = {}
    for label, kwargs in {
        "masked": {"weight_decay": 0.5, "mask": MASK},
        "fn": {"weight_decay": 0.5, "mask": lambda p: {k: v.ndim > 0 for k, v in p.items()}},
        "all": {"weight_decay": 0.5},
        "none": {"weight_decay": 0.0},
    }.items():
        tx = make(**kwargs)
        runs[label], _ = tx.update(grads, tx.init(params), params)
    for key, decayed in MASK.items():
        expected = runs["all"][key] if decayed else runs["none"][key]
        np.testing.assert_allclose(runs["masked"][key], expected, rtol=1e-6)
        np.testing.assert_allclose(runs["fn"][key], expected, rtol=1e-6)
    assert not np.allclose(runs["all"]["vector"], runs["none"]["vector"])


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_low_precision_params_keep_float32_estimates(name):
    params = {k: jnp.ones(s, jnp.bfloat16) for k, s in SHAPES.items()}
    tx = getattr(optix, name)()
    state = tx.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: (i + 1) * jnp.ones_like(p), params)
        updates, state = jax.jit(tx.update)(grads, state, params)
        params = optix.apply_updates(params, updates)
    assert state.d.dtype == jnp.float32 and state.numerator.dtype == jnp.float32
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_complex_params_converge(name):
    target = jnp.array([1.0 + 2.0j, -0.5j, 3.0])
    loss = lambda p: jnp.sum(jnp.abs(p - target) ** 2)  # noqa: E731
    tx = getattr(optix, name)()
    params = jnp.zeros(3, jnp.complex64)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jnp.conj(jax.grad(loss, holomorphic=False)(params))
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    for _ in range(300):
        params, state = step(params, state)
    assert float(loss(params)) < 1e-2 * float(loss(jnp.zeros(3, jnp.complex64)))


def test_parameter_free_arguments_are_checked():
    with pytest.raises(ValueError, match="estim_lr0"):
        optix.prodigy(estim_lr0=0.0)
    with pytest.raises(ValueError, match="beta3"):
        optix.prodigy(beta3=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        optix.dadapt_adamw(weight_decay=-1.0)
    with pytest.raises(TypeError, match="estim_lr0"):
        optix.dadapt_adamw(estim_lr0=lambda t: 1e-6)
    state = optix.prodigy().init(jnp.zeros(2))
    with pytest.raises(ValueError, match="estim_lr_coef"):
        optix.set_hyperparams(state, estim_lr_coef=-1.0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        optix.prodigy().update(jnp.ones(2), state)


@pytest.mark.parametrize("make", [optix.schedule_free_adamw, optix.schedule_free_sgd])
def test_schedule_free_step_writes_its_donated_buffers_without_copying_them(make):
    """The step reads ``z`` only before the kernel that overwrites it, so with params and state
    donated XLA updates both in place instead of copying them first (two extra passes over
    memory)."""
    tx = make(1e-2, weight_decay=1e-4)
    params = {"w": jnp.ones((1024,), jnp.float32)}

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optix.apply_updates(p, u), s

    jitted = jax.jit(step, donate_argnums=(0, 1))
    hlo = jitted.lower(params, tx.init(params), params).compile().as_text()
    entry = hlo[hlo.index("ENTRY") :]
    copies = [line for line in entry.splitlines() if "f32[1024]{0} copy(" in line]
    assert not copies, copies
