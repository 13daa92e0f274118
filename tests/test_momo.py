"""Momo and Momo-Adam: the contract checks, dtypes, convergence, a vmapped sweep, the first step.

The step-by-step comparisons with ``optax.contrib.momo`` and ``momo_adam`` (the loss passed as
``value=``) are entries of ``tests/references.py``: 120 teacher-forced float64 steps at
``rtol = 1e-10``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.problems import PROBLEMS
from tests.problems import TARGETS
from tests.reference import train_scanned
from tests.test_contract import _grads
from tests.test_contract import _params
from tests.test_contract import _signature

# ---------------------------------------------------------------------------------------------
# MADGRAD: optax 0.2.8 computes the weight lambda_k = (lr + eps) sqrt(k + 1) in float32 even under
# x64 (``jnp.sqrt`` of the int32 count), which costs it 1e-8 relative in every sum. So the float64
# reference is a NumPy transcription of the authors' code (facebookresearch/madgrad,
# ``MADGRAD.step``), and optax is checked at rtol 1e-4: its float32 error, amplified by the
# cancellation in ``z - x`` over 120 steps, stays below 1e-5; a step off in k or a misplaced
# momentum is 1e-2 or more. Finer conventions (eps added to the rate: 2e-5 relative here) are
# held by the float64 transcription.


# ---------------------------------------------------------------------------------------------
# Where optix differs from optax.contrib


# ---------------------------------------------------------------------------------------------
# Behaviour: convergence, arguments, dtypes


# ---------------------------------------------------------------------------------------------
# MoMo and MoMo-Adam read the loss (``value=``); the contract suite passes none, so their contract
# checks are here: jit without recompiling, abstract init, a stable state under scan and cond,
# dtypes kept, convergence on the standard problems, a vmapped learning-rate sweep.


MOMO = {"momo": lambda lr: optix.momo(lr), "momo_adam": lambda lr: optix.momo_adam(lr)}
# learning rate per problem (quadratic, rosenbrock, logistic)
MOMO_LR = {"momo": (1.0, 1e-3, 1.0), "momo_adam": (0.1, 0.01, 0.1)}


@pytest.mark.parametrize("name", sorted(MOMO))
def test_momo_contract(name):
    tx = MOMO[name](0.1)
    params = _params()
    state = tx.init(params)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    assert _signature(jax.eval_shape(tx.init, shapes)) == _signature(state)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads, value):
        updates, state = tx.update(grads, state, params, value=value)
        return optix.apply_updates(params, updates), state

    for seed in range(3):
        params, state = step(params, state, _grads(params, seed), jnp.float32(seed + 1))
        assert _signature(state) == _signature(tx.init(params))
    state = optix.set_hyperparams(state, learning_rate=1e-4)
    params, state = step(params, state, _grads(params, 7), jnp.float32(2.0))

    def body(state, grads):
        return tx.update(grads, state, params, value=jnp.float32(1.0))[1], None

    grads = jax.tree.map(lambda g: jnp.stack([g, -g]), _grads(params))
    scanned, _ = jax.jit(lambda s: jax.lax.scan(body, s, grads))(state)
    assert _signature(scanned) == _signature(state)
    with pytest.raises(ValueError, match="needs the current loss"):
        tx.update(_grads(params), state, params)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(_grads(params), state, None, value=1.0)
    with pytest.raises(TypeError, match="complex"):
        tx.init(_params(jnp.complex64))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", sorted(MOMO))
def test_momo_keeps_dtypes(name, dtype):
    tx = MOMO[name](0.1)
    params = _params(dtype)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(_grads(params), state, params, value=3.0)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert u.dtype == p.dtype and bool(jnp.all(jnp.isfinite(u)))
    assert state.loss_avg.dtype == jnp.float32 and state.mu["vector"].dtype == jnp.float32
    for value in optix.get_hyperparams(state).values():
        assert value.dtype == jnp.float32


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock", "logistic"])
@pytest.mark.parametrize("name", sorted(MOMO))
def test_momo_converges(name, problem):
    loss, params = PROBLEMS[problem]()
    steps, fraction = TARGETS[problem]
    lr = MOMO_LR[name][["quadratic", "rosenbrock", "logistic"].index(problem)]
    final, losses = train_scanned(MOMO[name](lr), loss, params, steps)
    assert float(loss(final)) < fraction * float(losses[0]), (name, problem)


@pytest.mark.parametrize("name", sorted(MOMO))
def test_momo_vmap_over_learning_rates_is_a_sweep(name):
    params = _params()
    grads = _grads(params)
    tx = MOMO[name](0.1)
    rates = jnp.array([1e-3, 1e-2, 1e-1], jnp.float32)
    states = jax.vmap(lambda lr: optix.set_hyperparams(tx.init(params), learning_rate=lr))(rates)
    update = jax.vmap(lambda s: tx.update(grads, s, params, value=jnp.float32(2.0))[0])
    batched = jax.jit(update)(states)
    for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
        single_tx = MOMO[name](lr)
        single, _ = single_tx.update(grads, single_tx.init(params), params, value=2.0)
        for b, s in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-7)


def test_momo_first_step_is_the_polyak_step(x64):
    """With no momentum and f_* = 0, a step size cap above it gives the Polyak step
    ``f(x) / ||g||^2 g``: where the linear model of f reaches 0 (half way on ||x||^2 / 2)."""
    loss = lambda p: 0.5 * jnp.sum(p**2)  # noqa: E731
    params = jnp.array([1.0, -2.0, 3.0])
    value, grads = jax.value_and_grad(loss)(params)
    tx = optix.momo(learning_rate=10.0, beta=0.0)
    updates, _ = tx.update(grads, tx.init(params), params, value=value)
    np.testing.assert_allclose(params + updates, 0.5 * params, rtol=1e-12)
    capped = optix.momo(learning_rate=0.1, beta=0.0)  # the cap binds: plain SGD with rate 0.1
    updates, _ = capped.update(grads, capped.init(params), params, value=value)
    np.testing.assert_allclose(params + updates, 0.9 * params, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Mechanic wraps a base optimizer; optix's and optax's Adam and SGD agree to rounding.


# ---------------------------------------------------------------------------------------------
# Sophia. Its Hessian estimator is random; two ways to make both sides see the same estimates:
# a deterministic estimator passed to both, and Hutchinson's estimator on a separable objective
# (a diagonal Hessian, where u * (H u) = diag(H) exactly for every sign vector u).


# ---------------------------------------------------------------------------------------------
# GaLore. optax runs the SVD in float32 even under x64; ``svd_dtype=jnp.float32`` reproduces it.
