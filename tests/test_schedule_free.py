"""Schedule-free SGD/AdamW: warmup, the averaged sequence, ``schedule_free_eval_params``, donation.

The step-by-step comparisons with optax.contrib (and those of Prodigy and D-Adapt AdamW with
optax.contrib and the authors' algorithms) are entries of ``tests/references.py``: teacher-forced
float64 comparisons (120 steps on a scalar/vector/matrix pytree, gradients from 1e-3 to 30 with an
all-zero step) at the default tolerance, ``rtol=1e-10`` with ``atol=1e-13 * max|update|``.
Schedule-free's update reads the params it is given (``x`` is recovered from them and ``z``), and
Prodigy's reads ``x_0 - x_t``; both sides get the same params every step, so teacher forcing
compares the same function of the same inputs.

Deliberate difference, shown below: schedule-free warmup (optix uses ``gamma_t`` for the ``z``
step and the averaging weight, as the authors' code; optax's step uses ``gamma_{t-1}``). The
all-zero-gradient start of Prodigy / D-Adapt (optax divides 0 by 0 and never recovers) is shown in
``tests/test_dadapt.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import SHAPES
from tests.reference import run_teacher_forced


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
