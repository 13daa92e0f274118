"""L-BFGS: against scipy's L-BFGS-B (iterations to scipy's optimum), against optax's ``lbfgs``
step by step, and the two-loop recursion against the explicit BFGS inverse-Hessian update."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import optix

# ---------------------------------------------------------------------------------------------
# Problems (float64 under the x64 fixture)


def _rosenbrock(dim):
    def f(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    return f, np.zeros(dim), np.ones(dim)


def _quadratic(dim=10, cond=1e4, seed=0):
    """0.5 (x - c)^T A (x - c), A with eigenvalues log-spaced over [1, cond] in a random basis.
    (The minimum value is 0, so f resolves x to machine precision at the optimum.)"""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    a = q @ np.diag(np.logspace(0, np.log10(cond), dim)) @ q.T
    c = rng.standard_normal(dim)
    a_j, c_j = jnp.asarray(a), jnp.asarray(c)
    return (lambda x: 0.5 * (x - c_j) @ (a_j @ (x - c_j))), np.zeros(dim), c


def _logistic(n=200, dim=5, l2=1e-3, seed=0):
    """Mean logistic loss on fixed Gaussian data, plus 0.5 * l2 * |w|^2."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    y = (x @ rng.standard_normal(dim) + 0.5 * rng.standard_normal(n) > 0).astype(np.float64)
    x_j, y_j = jnp.asarray(x), jnp.asarray(y)

    def f(w):
        z = x_j @ w
        return jnp.mean(jnp.logaddexp(0.0, z) - y_j * z) + 0.5 * l2 * (w @ w)

    return f, np.zeros(dim), None


PROBLEMS = {
    "rosenbrock2": lambda: _rosenbrock(2),
    "rosenbrock5": lambda: _rosenbrock(5),
    "rosenbrock10": lambda: _rosenbrock(10),
    "quadratic_cond1e4": _quadratic,
    "logistic_l2": _logistic,
}
TOL = 1e-6  # distance to scipy's optimum, in x (max-abs) and in f


def _optix_iterates(f, x0, steps, tx=None):
    """Iterates x_0 .. x_steps of optix's L-BFGS, one jitted step per outer iteration."""
    tx = tx if tx is not None else optix.lbfgs()
    value_and_grad = optix.value_and_grad_from_state(f)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return optix.apply_updates(x, updates), state, grad

    x, state = jnp.asarray(x0), tx.init(jnp.asarray(x0))
    out, grads = [np.asarray(x)], []
    for _ in range(steps):
        x, state, grad = step(x, state)
        out.append(np.asarray(x))
        grads.append(np.asarray(grad))
        if np.linalg.norm(grads[-1]) < 1e-12:  # converged: the rest would repeat x
            break
    return out, grads


def _scipy(f, x0):
    value_and_grad = jax.jit(jax.value_and_grad(f))
    iterates = [np.asarray(x0)]

    def fun(x):
        v, g = value_and_grad(jnp.asarray(x))
        return float(v), np.asarray(g)

    result = scipy.optimize.minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxcor": 10, "gtol": 1e-12, "ftol": 1e-16, "maxiter": 5000},
        callback=lambda x: iterates.append(np.copy(x)),
    )
    return result, iterates


def _first_within(f, iterates, x_star, f_star):
    for k, x in enumerate(iterates):
        close_x = np.max(np.abs(x - x_star)) <= TOL
        close_f = abs(float(f(jnp.asarray(x))) - f_star) <= TOL * max(1.0, abs(f_star))
        if close_x and close_f:
            return k
    return None


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_reaches_scipy_optimum_in_at_most_1_5x_its_iterations(name, x64):
    """Both run to the point where the iterate is within 1e-6 of scipy's optimum in x (max-abs)
    and in f (relative to max(1, |f*|)). optix may take at most 1.5x the iterations scipy needed
    to get there, and so at most 1.5x scipy's ``nit``."""
    f, x0, known = PROBLEMS[name]()
    result, scipy_iterates = _scipy(f, x0)
    x_star, f_star = result.x, float(result.fun)
    if known is not None:  # scipy's optimum is the true one
        np.testing.assert_allclose(x_star, known, atol=1e-8)
    scipy_k = _first_within(f, scipy_iterates, x_star, f_star)
    assert scipy_k is not None and scipy_k <= result.nit
    budget = int(1.5 * scipy_k)
    iterates, _ = _optix_iterates(f, x0, budget)
    optix_k = _first_within(f, iterates, x_star, f_star)
    assert optix_k is not None, f"{name}: not within {TOL} after {budget} iterations"
    assert optix_k <= 1.5 * scipy_k <= 1.5 * result.nit
    print(f"{name}: optix {optix_k} iterations, scipy {scipy_k} (nit {result.nit})")


@pytest.mark.parametrize("name", ["rosenbrock5"])
def test_matches_optax_lbfgs_step_by_step(name, x64):
    """Same start, same objective, both with their default zoom line search: the iterates agree
    (rtol 1e-10) at every step until the gradient norm reaches 1e-10, past which the two line
    searches may legitimately branch differently on rounding."""
    f, x0, _ = PROBLEMS[name]()
    ours, grads = _optix_iterates(f, x0, 150)

    tx = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(x, updates), state

    x = jnp.asarray(x0)
    state = tx.init(x)
    compared = 0
    with jax.numpy_dtype_promotion("standard"):
        for k in range(len(grads)):
            if np.linalg.norm(grads[k]) < 1e-10:
                break
            x, state = step(x, state)
            np.testing.assert_allclose(ours[k + 1], x, rtol=1e-10, atol=1e-13, err_msg=f"step {k}")
            compared += 1
    assert compared >= 15  # converged well before 150 steps: every step up to 1e-10 compared


# ---------------------------------------------------------------------------------------------
# The direction itself


def _dense_bfgs_direction(pairs, g, gamma):
    """Nocedal & Wright eq. (6.17): H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T, from
    H_0 = gamma I, over the pairs oldest first; then the direction H g."""
    n = g.size
    h = gamma * np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h @ g


def test_two_loop_recursion_equals_dense_bfgs_update_with_ring_wraparound(x64):
    """Teacher-forced on a convex quadratic (so every pair has s.y > 0): at each of 9 steps the
    direction equals H_k g_k with H_k from the explicit BFGS update over the last 3 pairs."""
    rng = np.random.default_rng(3)
    m = rng.standard_normal((6, 6))
    a = m @ m.T + np.eye(6)
    tx = optix.scale_by_lbfgs(memory_size=3)
    xs = [rng.standard_normal(6) for _ in range(10)]
    state = tx.init(jnp.asarray(xs[0]))
    pairs = []
    for k, x in enumerate(xs):
        g = a @ x
        d, state = jax.jit(tx.update)(jnp.asarray(g), state, jnp.asarray(x))
        if k > 0:
            pairs.append((x - xs[k - 1], g - a @ xs[k - 1]))
        if pairs:
            s, y = pairs[-1]
            gamma = (s @ y) / (y @ y)
        else:
            gamma = min(1.0, 1.0 / np.linalg.norm(g))
        np.testing.assert_allclose(d, _dense_bfgs_direction(pairs[-3:], g, gamma), rtol=1e-9)


def test_pairs_with_nonpositive_curvature_are_skipped_unlike_optax(x64):
    """optix skips a pair with s.y <= 0 (it would make H indefinite); optax stores it. After such
    a pair optix's direction is still the first-step one, min(1, 1/|g|) g: a descent direction."""
    x0, x1 = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    g0, g1 = jnp.array([1.0, 0.5]), jnp.array([-2.0, 0.5])  # s.y = -3 < 0
    ours, theirs = optix.scale_by_lbfgs(), optax.scale_by_lbfgs()
    update = jax.jit(ours.update)
    _, state = update(g0, ours.init(x0), x0)
    d_ours, state = update(g1, state, x1)
    np.testing.assert_allclose(d_ours, g1 / jnp.linalg.norm(g1), rtol=1e-12)
    assert float(g1 @ d_ours) > 0 and int(state.head) == 0
    with jax.numpy_dtype_promotion("standard"):
        update = jax.jit(theirs.update)
        _, t_state = update(g0, theirs.init(x0), x0)
        d_theirs, _ = update(g1, t_state, x1)
    assert not np.allclose(d_theirs, d_ours)


# ---------------------------------------------------------------------------------------------
# The line-search optimizer under jit, and its errors


def test_line_search_version_compiles_once_in_a_python_loop():
    f = lambda p: jnp.sum((p["w"] - 1.0) ** 2 * jnp.arange(1.0, 4.0)) + jnp.cosh(p["b"])  # noqa: E731
    tx = optix.lbfgs()
    value_and_grad = optix.value_and_grad_from_state(f)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return optix.apply_updates(params, updates), state

    params = {"w": jnp.zeros(3), "b": jnp.ones(())}
    state = tx.init(params)
    signature = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    for _ in range(8):
        params, state = step(params, state)
    state = optix.set_hyperparams(state, c1=1e-3, c2=0.8, learning_rate=0.9)
    for _ in range(4):
        params, state = step(params, state)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == signature
    assert float(f(params)) < 1.0 + 1e-6  # the minimum is 1 (cosh(0))


def test_line_search_state_is_a_scan_carry():
    f = lambda x: jnp.sum((x - 2.0) ** 2) + 0.1 * jnp.sum(x**4)  # noqa: E731
    tx = optix.lbfgs(linesearch="backtracking")
    value_and_grad = optix.value_and_grad_from_state(f)

    def body(carry, _):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return (optix.apply_updates(x, updates), state), value

    x0 = jnp.zeros(4)
    (x, _), values = jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), length=30))(x0)
    assert bool(jnp.all(jnp.diff(values) <= 0))
    assert float(jnp.linalg.norm(jax.grad(f)(x))) < 1e-5


@pytest.mark.parametrize("missing", ["value", "grad", "value_fn"])
def test_line_search_without_objective_names_the_missing_argument(missing):
    f = lambda x: jnp.sum(x**2)  # noqa: E731
    x = jnp.ones(3)
    tx = optix.lbfgs()
    kwargs = {"value": f(x), "grad": jax.grad(f)(x), "value_fn": f}
    del kwargs[missing]
    with pytest.raises(ValueError, match=f"needs `{missing}=`"):
        tx.update(jax.grad(f)(x), tx.init(x), x, **kwargs)


def test_lbfgs_needs_params_and_valid_options():
    tx = optix.lbfgs(linesearch=None)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)), None)
    with pytest.raises(ValueError, match="memory_size"):
        optix.scale_by_lbfgs(memory_size=0)
    with pytest.raises(ValueError, match="linesearch"):
        optix.lbfgs(linesearch="wolfe")  # type: ignore[arg-type]


def test_fixed_step_without_line_search_is_lr_times_direction(x64):
    """``linesearch=None``: the step is -learning_rate times scale_by_lbfgs's direction."""
    x, g = jnp.array([1.0, -2.0]), jnp.array([0.3, 0.4])
    tx = optix.lbfgs(0.25, linesearch=None)
    step, _ = tx.update(g, tx.init(x), x)
    direction, _ = optix.scale_by_lbfgs().update(g, optix.scale_by_lbfgs().init(x), x)
    np.testing.assert_allclose(step, -0.25 * direction, rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# The flat memory: compile size linear in the leaf count, dtypes and complex leaves kept


def test_no_kernel_reads_every_leaf_so_compile_size_is_linear_in_leaves():
    """Kept leaf by leaf, each inner product of the two-loop recursion was a chain of per-leaf
    sums that XLA copied into every leaf's update kernel, each taking all n partial sums: n
    kernels of n operands, compile time quadratic in the leaf count. On the flat memory no fused
    kernel of the compiled step takes more operands than a few (49 on 24 leaves before)."""
    import re

    params = {f"p{i:02d}": jnp.ones(4) for i in range(24)}
    tx = optix.lbfgs(0.5, linesearch=None)
    text = jax.jit(lambda p, s: tx.update(p, s, p)).lower(params, tx.init(params)).compile()
    heads = re.findall(r"^%fused\S* \((.*)\) -> ", text.as_text(), flags=re.M)
    assert heads and max(h.count(": ") for h in heads) < 12


def test_mixed_precisions_and_complex_leaves_match_the_all_real_float32_direction():
    """A bf16, a float32 and a complex64 leaf: each direction comes back in its gradient's dtype,
    and equals (to float32 rounding, then the leaf's own) the direction of the same problem posed
    as float32 real leaves (the complex leaf as its real and imaginary parts), over 7 steps with
    a memory of 3 (the ring wraps around). The memory is one float32 row of 4 + 6 + 2*3 reals."""
    rng = np.random.default_rng(0)
    curv = {
        "a": rng.uniform(0.5, 2, 4),
        "b": rng.uniform(0.5, 2, (2, 3)),
        "c": rng.uniform(1, 2, 3),
    }
    dtypes = {"a": jnp.bfloat16, "b": jnp.float32, "c": jnp.complex64}
    tx = optix.scale_by_lbfgs(memory_size=3)
    update = jax.jit(tx.update)

    def mixed(x):
        return {k: jnp.asarray(v, dtypes[k]) for k, v in x.items()}

    def real(x):
        out = {k: jnp.asarray(x[k], jnp.float32) for k in ("a", "b")}
        out["c_re"], out["c_im"] = (jnp.asarray(f(x["c"]), jnp.float32) for f in (np.real, np.imag))
        return out

    x = {"a": rng.standard_normal(4), "b": rng.standard_normal((2, 3))}
    x["c"] = rng.standard_normal(3) + 1j * rng.standard_normal(3)
    x = {k: np.asarray(mixed(x)[k]) for k in x}  # exactly representable in every dtype
    state_m, state_r = tx.init(mixed(x)), tx.init(real(x))
    assert state_m.s_memory.shape == (3, 16) and state_m.s_memory.dtype == jnp.float32
    for _ in range(7):
        g = {k: curv[k] * x[k] for k in x}
        g = {k: np.asarray(mixed(g)[k]) for k in g}
        d_m, state_m = update(mixed(g), state_m, mixed(x))
        d_r, state_r = update(real(g), state_r, real(x))
        assert {k: v.dtype for k, v in d_m.items()} == {k: jnp.dtype(t) for k, t in dtypes.items()}
        np.testing.assert_array_equal(d_m["a"], d_r["a"].astype(jnp.bfloat16))
        np.testing.assert_allclose(d_m["b"], d_r["b"], rtol=1e-6)
        np.testing.assert_allclose(
            d_m["c"], np.asarray(d_r["c_re"]) + 1j * np.asarray(d_r["c_im"]), rtol=1e-6
        )
        x = {k: np.asarray(mixed({k: x[k] - 0.3 * np.asarray(d_m[k])})[k]) for k in x}
