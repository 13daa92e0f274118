"""Gradients with respect to hyperparameters, for every optimizer of the case registry.

Hyperparameters are arrays in the optimizer state, so the loss after ``N`` steps is a function
of them that JAX differentiates: ``set_hyperparams(state, learning_rate=jnp.exp(log_lr))`` on a
built state, or a traced value passed to the factory. Here ``d(loss after 20 steps) / d(log
learning_rate)`` from ``jax.grad`` of one jitted ``lax.scan`` must match a central finite
difference to 1e-4 (relative), in float64, on a small smooth problem: a softmax regression with a
(4, 4) weight matrix (for the matrix optimizers), a bias vector and an L2 penalty, where one row
of the weight matrix has a zero gradient at every step (a dead unit: where an optimizer divides by
the square root of a second moment that stays 0, the derivative must stay finite).

A case is checked at its own learning rate unless ``tests.cases.HYPERGRADIENT_LR`` gives another
with the reason (a kink of the loss, or a run that has already converged); the cases in
``tests.cases.HYPERGRADIENT_ZERO_GRADIENT_NAN`` run without the dead unit, each with the defect
that makes their derivative NaN there. Sign-based methods (lion, signum, sign_sgd, rprop) are
piecewise smooth in the learning rate; on this problem and these 20 steps no sign flips inside
the finite-difference stencil, so they are checked as well.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.cases import BY_NAME
from tests.cases import CASES
from tests.cases import HYPERGRADIENT_LR
from tests.cases import HYPERGRADIENT_ZERO_GRADIENT_NAN
from tests.cases import IDS

STEPS = 20
H = 1e-5  # finite-difference step in log(learning_rate)
RTOL = 1e-4
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _problem(zero_coordinate: bool = True):
    """Softmax regression on 16 points with 4 classes, plus 0.05 * |W|^2, in float64.

    With ``zero_coordinate`` the inputs have a 4th feature that is 0 everywhere, so one row of the
    (4, 4) weight matrix, left out of the penalty, has a gradient of exactly 0 at every step (a
    dead unit): its second moment stays 0, where sqrt has an infinite derivative. Otherwise the
    inputs are 3-D and the weight matrix (3, 4).
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3))
    labels = jnp.asarray(rng.integers(0, 4, size=16))
    w = 0.3 * rng.normal(size=(4, 4))
    if zero_coordinate:
        x = np.concatenate([x, np.zeros((16, 1))], axis=1)
    else:
        w = w[:3]
    x = jnp.asarray(x)

    def loss(p):
        logits = x @ p["w"] + p["b"][None, :]
        picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        penalty = 0.05 * jnp.sum(p["w"][:3] ** 2)
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked) + penalty

    params = {"w": jnp.asarray(w), "b": jnp.zeros(4)}
    return loss, params


def _loss_after_steps(make_state, loss, params):
    """``z -> loss after STEPS steps``, where ``make_state(z) -> (tx, state)``."""

    def run(z):
        tx, state = make_state(z)

        def step(carry, _):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p), s, p)
            return (optix.apply_updates(p, updates), s), None

        (p, _), _ = jax.lax.scan(step, (params, state), None, length=STEPS)
        return loss(p)

    return run


def _check(run, z0):
    """``jax.grad`` of ``run`` at the vector ``z0`` against central differences along each axis,
    all from one compiled function (one vmapped 20-step loop)."""
    z0 = jnp.asarray(z0, jnp.float64)
    shifts = H * jnp.eye(z0.size)

    def both(z):
        points = jnp.concatenate([z[None], z[None] + shifts, z[None] - shifts])
        values, grads = jax.vmap(jax.value_and_grad(run))(points)
        n = z.size
        return values[0], grads[0], (values[1 : n + 1] - values[n + 1 :]) / (2 * H)

    # one compile; XLA's backend optimisations only cost time on a 20-step loop this small
    compiled = jax.jit(both).lower(z0).compile(compiler_options=FAST_COMPILE)
    value, grad, fd = (np.asarray(a) for a in compiled(z0))
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
    # well above the rounding of a difference (1e-16 * loss / H): the check is not vacuous
    assert np.all(np.abs(fd) > 1e-6), f"the loss does not depend on the hyperparameter: {fd}"
    np.testing.assert_allclose(grad, fd, rtol=RTOL)


def _log_learning_rate(case) -> list[float]:
    return [math.log(HYPERGRADIENT_LR.get(case.name, (case.kwargs["learning_rate"], ""))[0])]


def test_hypergradient_tables_name_cases():
    assert set(HYPERGRADIENT_LR) <= set(BY_NAME)
    assert set(HYPERGRADIENT_ZERO_GRADIENT_NAN) <= set(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_learning_rate_gradient_through_set_hyperparams(case, x64):
    """The learning rate lives in the state: set on a built state, it is differentiable."""
    loss, params = _problem(zero_coordinate=case.name not in HYPERGRADIENT_ZERO_GRADIENT_NAN)
    tx = case.make()
    state = tx.init(params)
    assert "learning_rate" in optix.get_hyperparams(state)

    def make_state(z):
        return tx, optix.set_hyperparams(state, learning_rate=jnp.exp(z[0]))

    _check(_loss_after_steps(make_state, loss, params), _log_learning_rate(case))


@pytest.mark.parametrize("name", ["adam", "lion", "prodigy"])
def test_learning_rate_gradient_through_the_factory(name, x64):
    """A traced learning rate passed to the factory is differentiable too (a sample of cases:
    once built, the state is the same as the one set_hyperparams fills)."""
    case = BY_NAME[name]
    loss, params = _problem(zero_coordinate=name not in HYPERGRADIENT_ZERO_GRADIENT_NAN)

    def make_state(z):
        tx = case.make(learning_rate=jnp.exp(z[0]))
        return tx, tx.init(params)

    _check(_loss_after_steps(make_state, loss, params), _log_learning_rate(case))


def test_adam_betas_gradient(x64):
    """Other hyperparameters too: Adam's b1 and b2, set in the state as sigmoid(z)."""
    loss, params = _problem(zero_coordinate="adam" not in HYPERGRADIENT_ZERO_GRADIENT_NAN)
    tx = optix.adam(0.05)
    state = tx.init(params)

    def make_state(z):
        b1, b2 = jax.nn.sigmoid(z[0]), jax.nn.sigmoid(z[1])
        return tx, optix.set_hyperparams(state, b1=b1, b2=b2)

    logit = lambda b: math.log(b / (1 - b))  # noqa: E731
    _check(_loss_after_steps(make_state, loss, params), [logit(0.9), logit(0.999)])


@pytest.mark.parametrize("name", ["dadapt_adamw", "mechanize_adam"])
def test_forward_mode_hypergradient(name, x64):
    """``jax.jvp`` through the jitted loop equals ``jax.grad``: a loop carries instantiated zero
    tangents, so a square root of a quantity that starts at 0 (D-Adaptation's second moment,
    Mechanic's sum of squared inner products) must have a finite derivative there."""
    case = BY_NAME[name]
    loss, params = _problem(zero_coordinate=name not in HYPERGRADIENT_ZERO_GRADIENT_NAN)
    tx = case.make()
    state = tx.init(params)
    run = _loss_after_steps(
        lambda z: (tx, optix.set_hyperparams(state, learning_rate=jnp.exp(z[0]))), loss, params
    )
    z0 = jnp.asarray(_log_learning_rate(case))

    def both(z):
        return jax.jvp(run, (z,), (jnp.ones(1),))[1], jax.grad(run)(z)[0]

    forward, reverse = jax.jit(both).lower(z0).compile(compiler_options=FAST_COMPILE)(z0)
    assert np.isfinite(forward)
    np.testing.assert_allclose(forward, reverse, rtol=1e-9)
