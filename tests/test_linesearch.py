"""The zoom (strong Wolfe) and backtracking (Armijo) line searches, and value_and_grad_from_state."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _search(tx, f, x, direction=None):
    """One line search from x along ``direction`` (default: -grad); returns (step, state)."""
    value, grad = jax.value_and_grad(f)(x)
    u = -grad if direction is None else direction
    update = jax.jit(lambda u, s, x, v, g: tx.update(u, s, x, value=v, grad=g, value_fn=f))
    return update(u, tx.init(x), x, value, grad)


@pytest.mark.parametrize("start", [[-1.2, 1.0], [0.0, 0.0], [2.0, -1.0, 0.5, 3.0]])
def test_zoom_step_satisfies_strong_wolfe(start, x64):
    """Along the steepest-descent direction of Rosenbrock (where a unit step is far too long,
    so both bracketing and zoom run), the accepted step meets both conditions."""
    c1, c2 = 1e-4, 0.9
    x = jnp.asarray(start)
    tx = optix.scale_by_zoom_linesearch(30, c1=c1, c2=c2, approx_decrease_rtol=None)
    step, state = _search(tx, _rosenbrock, x)
    value, grad = jax.value_and_grad(_rosenbrock)(x)
    u = -grad
    eta = float(state.stepsize)
    assert eta > 0
    np.testing.assert_allclose(step, eta * u, rtol=1e-15)
    new_value, new_grad = jax.value_and_grad(_rosenbrock)(x + step)
    assert float(new_value) <= float(value) + c1 * eta * float(grad @ u)
    assert abs(float(new_grad @ u)) <= c2 * abs(float(grad @ u))
    assert float(state.info.decrease_error) == 0 and float(state.info.curvature_error) == 0
    np.testing.assert_allclose(state.value, new_value, rtol=1e-14)
    np.testing.assert_allclose(state.grad, new_grad, rtol=1e-12)


@pytest.mark.parametrize("strategy", ["keep", "one"])
def test_zoom_matches_optax_over_sgd_steps(strategy, x64):
    """chain(sgd(1), zoom) on Rosenbrock 4-D, 100 teacher-forced steps (both sides get optix's
    iterate, each keeps its own state): the steps agree to rtol 1e-10 (the same formulas in a
    different order), both with optax's defaults. Not teacher-forced, gradient descent on
    Rosenbrock amplifies the rounding difference to ~1e-10 after 50 steps."""
    f = _rosenbrock
    ours = optix.chain(
        optix.sgd(1.0), optix.scale_by_zoom_linesearch(20, initial_guess_strategy=strategy)
    )
    theirs = optax.chain(
        optax.sgd(1.0), optax.scale_by_zoom_linesearch(20, initial_guess_strategy=strategy)
    )
    up_ours = jax.jit(lambda g, s, x, v: ours.update(g, s, x, value=v, grad=g, value_fn=f))
    up_theirs = jax.jit(lambda g, s, x, v: theirs.update(g, s, x, value=v, grad=g, value_fn=f))
    x0 = x = jnp.array([-1.2, 1.0, 0.5, -0.3])
    s_ours, s_theirs = ours.init(x), theirs.init(x)
    value_and_grad = jax.jit(jax.value_and_grad(f))
    for k in range(100):
        value, grad = value_and_grad(x)
        u_ours, s_ours = up_ours(grad, s_ours, x, value)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = up_theirs(grad, s_theirs, x, value)
        np.testing.assert_allclose(u_ours, u_theirs, rtol=1e-10, atol=1e-15, err_msg=f"step {k}")
        x = x + u_ours
    assert float(f(x)) < 0.1 * float(f(x0))


def test_backtracking_matches_optax_and_satisfies_armijo(x64):
    f = _rosenbrock
    ours = optix.chain(optix.sgd(1.0), optix.scale_by_backtracking_linesearch(30))
    theirs = optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(30))
    x = jnp.array([-1.2, 1.0, 0.5])
    s_ours, s_theirs = ours.init(x), theirs.init(x)
    up_ours = jax.jit(lambda g, s, x, v: ours.update(g, s, x, value=v, grad=g, value_fn=f))
    up_theirs = jax.jit(lambda g, s, x, v: theirs.update(g, s, x, value=v, grad=g, value_fn=f))
    value_and_grad = jax.jit(jax.value_and_grad(f))
    for k in range(100):
        value, grad = value_and_grad(x)
        u_ours, s_ours = up_ours(grad, s_ours, x, value)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = up_theirs(grad, s_theirs, x, value)
        np.testing.assert_allclose(u_ours, u_theirs, rtol=1e-10, atol=1e-15, err_msg=f"step {k}")
        eta = float(s_ours[1].stepsize)
        assert float(f(x + u_ours)) <= float(value) - 1e-4 * eta * float(grad @ grad)
        x = x + u_ours
    assert float(f(x)) < 0.1 * float(f(jnp.array([-1.2, 1.0, 0.5])))


def test_backtracking_does_not_step_into_non_finite_values(x64):
    """Every trial lands where f is NaN: the step is 0 and the state keeps the current value."""
    f = lambda x: jnp.where(jnp.sum(x) > 0.5, jnp.nan, jnp.sum(x**2))  # noqa: E731
    x = jnp.array([0.25, 0.2])
    tx = optix.scale_by_backtracking_linesearch(3, store_grad=True)
    step, state = _search(tx, f, x, direction=jnp.array([1.0, 1.0]))
    np.testing.assert_array_equal(step, jnp.zeros(2))
    assert float(state.stepsize) == 0 and float(state.value) == float(f(x))


def test_zoom_stays_finite_where_long_steps_are_not(x64):
    """f is NaN beyond x = 1.5; the unit step from 0 lands there. The search backs off."""
    f = lambda x: jnp.where(x[0] > 1.5, jnp.nan, (x[0] - 1.0) ** 2)  # noqa: E731
    x = jnp.array([0.0])
    step, state = _search(optix.scale_by_zoom_linesearch(30), f, x, direction=jnp.array([2.0]))
    assert 0 < float(step[0]) <= 1.5
    assert float(f(x + step)) < float(f(x))


def test_extra_keyword_arguments_reach_value_fn_that_accepts_them(x64):
    """A data batch passed to update goes to value_fn; keys value_fn does not take are ignored
    (chain forwards every keyword to every member)."""

    def f(w, data):
        return jnp.sum((data @ w - 1.0) ** 2)

    data = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    w = jnp.zeros(2)
    tx = optix.lbfgs()
    value, grad = jax.value_and_grad(f)(w, data)
    updates, state = tx.update(
        grad, tx.init(w), w, value=value, grad=grad, value_fn=f, data=data, unrelated=3
    )
    new_w = w + updates
    assert float(f(new_w, data)) < float(value)
    np.testing.assert_allclose(state[2].value, f(new_w, data), rtol=1e-14)


def test_value_and_grad_from_state_reuses_the_line_search_evaluation(x64):
    calls = []

    def f(x):
        calls.append(1)
        return jnp.sum((x - 1.0) ** 2 * jnp.array([1.0, 10.0]))

    tx = optix.lbfgs()
    value_and_grad = optix.value_and_grad_from_state(f)
    x = jnp.zeros(2)
    state = tx.init(x)
    v0, g0 = value_and_grad(x, state=state)  # nothing stored yet: evaluated
    np.testing.assert_allclose(g0, jax.grad(f)(x))
    updates, state = tx.update(g0, state, x, value=v0, grad=g0, value_fn=f)
    x = x + updates
    calls.clear()
    v1, g1 = jax.jit(lambda x, s: value_and_grad(x, state=s))(x, state)
    np.testing.assert_allclose(v1, f(x), rtol=1e-14)
    np.testing.assert_allclose(g1, jax.grad(f)(x), rtol=1e-12)
    # eager and with a finite stored value, only the stored pair is returned
    calls.clear()
    value_and_grad(x, state=state)
    assert len(calls) <= 1  # lax.cond traces the fallback branch once; it does not run it


def test_value_and_grad_from_state_errors():
    f = lambda x: jnp.sum(x**2)  # noqa: E731
    x = jnp.ones(2)
    with pytest.raises(ValueError, match="exactly one line-search"):
        optix.value_and_grad_from_state(f)(x, state=optix.adam(1e-3).init(x))
    tx = optix.chain(optix.sgd(1.0), optix.scale_by_backtracking_linesearch())
    with pytest.raises(ValueError, match="store_grad=True"):
        optix.value_and_grad_from_state(f)(x, state=tx.init(x))


def test_hyperparameters_live_in_state_and_are_range_checked():
    tx = optix.scale_by_zoom_linesearch(10, c1=1e-3, max_stepsize=5.0)
    state = tx.init(jnp.zeros(2))
    hp = optix.get_hyperparams(state)
    assert {"c1", "c2", "increase_factor", "max_stepsize", "approx_decrease_rtol"} <= set(hp)
    assert float(optix.set_hyperparams(state, c2=0.5).hyperparams.values["c2"]) == 0.5
    with pytest.raises(ValueError, match="c2"):
        optix.set_hyperparams(state, c2=1.5)
    back = optix.scale_by_backtracking_linesearch().init(jnp.zeros(2))
    with pytest.raises(ValueError, match="decrease_factor"):
        optix.set_hyperparams(back, decrease_factor=1.0)
    with pytest.raises(ValueError, match="c1"):
        optix.scale_by_zoom_linesearch(c1=0.95, c2=0.9)
    with pytest.raises(ValueError, match="initial_guess_strategy"):
        optix.scale_by_zoom_linesearch(initial_guess_strategy="last")


def test_changing_c1_does_not_recompile():
    f = lambda x: jnp.sum(jnp.cosh(x))  # noqa: E731
    tx = optix.chain(optix.sgd(1.0), optix.scale_by_zoom_linesearch(10))
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(x, state):
        value, grad = jax.value_and_grad(f)(x)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return x + updates, state

    x = jnp.ones(3)
    state = tx.init(x)
    x, state = step(x, state)
    state = optix.set_hyperparams(state, c1=1e-2, increase_factor=3.0)
    x, state = step(x, state)
    assert float(f(x)) < float(f(jnp.ones(3)))
