"""optix against ``optax.contrib`` for the optimizers ported from it, step by step.

Each comparison runs ``tests.reference.N_STEPS`` teacher-forced float64 steps (same params and
gradients on both sides at every step, each side keeping its own state) and compares every
step's updates leaf by leaf at ``rtol = 1e-10``. Where optix deliberately differs from optax, a
test below shows the difference. Behaviour tests (convergence, argument checks, dtypes) follow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import optix
from tests.problems import PROBLEMS, TARGETS
from tests.reference import (
    N_STEPS,
    SHAPES,
    assert_updates_close,
    gradient_stream,
    params_stream,
    run_teacher_forced,
)
from tests.test_contract import _grads, _params, _signature


def _schedule(t):
    """A cosine decay from 0.06 to 0.01 over 100 steps (in float64 under x64)."""
    frac = jnp.minimum(jnp.asarray(t), 100).astype(float) / 100
    return 0.05 * (1 + jnp.cos(jnp.pi * frac)) / 2 + 0.01


# name -> (optix factory, optax factory); built inside the test, with x64 on.
PAIRS = {
    "cocob": (
        lambda: optix.cocob(weight_decay=0.01),
        lambda: optax.contrib.cocob(weight_decay=0.01),
    ),
    "cocob_alpha": (
        lambda: optix.cocob(alpha=10.0, eps=1e-3),
        lambda: optax.contrib.cocob(alpha=10.0, eps=1e-3),
    ),
    "dog_heuristic": (
        lambda: optix.dog(weight_decay=0.01),
        lambda: optax.contrib.dog(weight_decay=0.01),
    ),
    "dog_distance_schedule": (
        lambda: optix.dog(_schedule, init_step=("distance", 0.3)),
        lambda: optax.contrib.dog(_schedule, init_step=("distance", 0.3)),
    ),
    "dog_learning_rate": (
        lambda: optix.dog(init_step=("learning_rate", 0.02), eps=1e-6),
        lambda: optax.contrib.dog(init_step=("learning_rate", 0.02), eps=1e-6),
    ),
    "dowg": (
        lambda: optix.dowg(weight_decay=0.01),
        lambda: optax.contrib.dowg(weight_decay=0.01),
    ),
    "dowg_init": (
        lambda: optix.dowg(0.5, init_estim_sq_dist=0.2, eps=1e-6),
        lambda: optax.contrib.dowg(0.5, init_estim_sq_dist=0.2, eps=1e-6),
    ),
    "simplified_ademamix": (
        lambda: optix.simplified_ademamix(1e-3, alpha=2.0, eps_root=1e-8, weight_decay=0.01),
        lambda: optax.contrib.simplified_ademamix(
            1e-3, alpha=2.0, eps_root=1e-8, weight_decay=0.01
        ),
    ),
    "simplified_ademamix_schedule": (
        lambda: optix.simplified_ademamix(_schedule, b1=0.9, b2=0.99, alpha=_schedule),
        lambda: optax.contrib.simplified_ademamix(_schedule, b1=0.9, b2=0.99, alpha=_schedule),
    ),
    "acprop": (
        lambda: optix.acprop(1e-2, weight_decay=0.01),
        lambda: optax.contrib.acprop(1e-2, weight_decay=0.01),
    ),
    "acprop_eps": (
        lambda: optix.acprop(_schedule, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
        lambda: optax.contrib.acprop(_schedule, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
    ),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_optax_contrib_step_by_step(name, x64):
    ours, theirs = PAIRS[name]
    run_teacher_forced(ours(), theirs(), name, seed=len(name))


# ---------------------------------------------------------------------------------------------
# MADGRAD: optax 0.2.8 computes the weight lambda_k = (lr + eps) sqrt(k + 1) in float32 even under
# x64 (``jnp.sqrt`` of the int32 count), which costs it 1e-8 relative in every sum. So the float64
# reference is a NumPy transcription of the authors' code (facebookresearch/madgrad,
# ``MADGRAD.step``), and optax is checked at rtol 1e-4: its float32 error, amplified by the
# cancellation in ``z - x`` over 120 steps, stays below 1e-5; a step off in k or a misplaced
# momentum is 1e-2 or more. Finer conventions (eps added to the rate: 2e-5 relative here) are
# held by the float64 transcription.


class _NumpyMadgrad:
    def __init__(self, lr, momentum=0.9, weight_decay=0.0, eps=1e-6):
        self.lr, self.momentum, self.wd, self.eps = lr, momentum, weight_decay, eps

    def init(self, params):
        x0 = {k: np.array(v, np.float64) for k, v in params.items()}
        zeros = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        return {"k": 0, "x0": x0, "s": zeros, "G": dict(zeros)}

    def update(self, g, st, x):
        x = {k: np.asarray(v) for k, v in x.items()}
        g = {k: np.asarray(v) + self.wd * x[k] for k, v in g.items()}
        lr = self.lr(st["k"]) if callable(self.lr) else self.lr
        lam = (float(lr) + self.eps) * np.sqrt(st["k"] + 1)
        s = {k: st["s"][k] + lam * g[k] for k in g}
        big_g = {k: st["G"][k] + lam * g[k] ** 2 for k in g}
        ck = 1 - self.momentum
        out = {}
        for k in g:
            z = st["x0"][k] - s[k] / (np.cbrt(big_g[k]) + self.eps)
            out[k] = jnp.asarray((1 - ck) * x[k] + ck * z - x[k])
        return out, {**st, "k": st["k"] + 1, "s": s, "G": big_g}


def _run_against_numpy(ours, theirs, what, seed, *, rtol=1e-10, atol_rel=1e-13):
    grads, params = gradient_stream(seed), params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    state_ours, state_theirs = ours.init(as_jax(params[0])), theirs.init(params[0])
    update = jax.jit(ours.update)
    for t in range(N_STEPS):
        u_ours, state_ours = update(as_jax(grads[t]), state_ours, as_jax(params[t]))
        u_theirs, state_theirs = theirs.update(grads[t], state_theirs, params[t])
        assert_updates_close(u_ours, u_theirs, t, what, rtol=rtol, atol_rel=atol_rel)


def _numpy_schedule(t):
    return float(_schedule(t))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0.9, "weight_decay": 0.01},
        {"momentum": 0.0, "eps": 1e-4},
        {"momentum": 0.5, "schedule": True},
    ],
)
def test_madgrad_matches_the_authors_algorithm(x64, kwargs):
    kwargs = dict(kwargs)
    lr = _schedule if kwargs.pop("schedule", False) else 0.05
    ours = optix.madgrad(lr, **kwargs)
    theirs = _NumpyMadgrad(_numpy_schedule if callable(lr) else lr, **kwargs)
    _run_against_numpy(ours, theirs, f"madgrad {kwargs}", seed=3)


def test_madgrad_matches_optax_to_float32_precision(x64):
    """optax's float32 lambda_k is the only difference (see the comment above)."""
    ours = optix.madgrad(0.05, momentum=0.9, weight_decay=0.01)
    theirs = optax.contrib.madgrad(0.05, momentum=0.9, weight_decay=0.01)
    run_teacher_forced(ours, theirs, "madgrad vs optax", seed=4, rtol=1e-4, atol_rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Where optix differs from optax.contrib


def _one_step(tx, params, grads):
    return tx.update(grads, tx.init(params), params)[0]


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}


def test_cocob_learning_rate_scales_the_step_where_optax_scales_the_gradient(x64):
    """optix multiplies COCOB's step by the learning rate; optax multiplies the gradient, which
    the bet is invariant to (up to eps), so optax's constant learning rate changes nothing."""
    params, grads = _tree(0), _tree(1)
    stream = [grads, jax.tree.map(lambda g: -0.5 * g, grads), grads]

    def run(tx):
        state, out = tx.init(params), []
        for g in stream:
            u, state = tx.update(g, state, params)
            out.append(u)
        return out

    ours_1, ours_small = run(optix.cocob(1.0)), run(optix.cocob(0.1))
    theirs_1, theirs_small = run(optax.contrib.cocob(1.0)), run(optax.contrib.cocob(0.1))
    for a, b, c, d in zip(ours_1, ours_small, theirs_1, theirs_small, strict=True):
        for k in SHAPES:
            np.testing.assert_allclose(b[k], 0.1 * a[k], rtol=1e-12)
            np.testing.assert_allclose(c[k], a[k], rtol=1e-10)
            np.testing.assert_allclose(d[k], c[k], rtol=1e-6)  # optax: the rate had no effect


# ---------------------------------------------------------------------------------------------
# Behaviour: convergence, arguments, dtypes


def _train(tx, loss, params, steps, **extra):
    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = tx.update(grads, state, params, value=value, **extra)
            return (optix.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params, losses

    return run(params)


def _quadratic():
    a = jnp.linspace(1.0, 10.0, 6, dtype=jnp.float32)
    target = jnp.linspace(-1.0, 2.0, 6, dtype=jnp.float32)

    def loss(p):
        x = jnp.concatenate([p["w"].reshape(-1), p["b"]])
        return 0.5 * jnp.sum(a * (x - target) ** 2)

    return loss, {"w": jnp.zeros((2, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}


CONVERGING = {
    "madgrad": lambda: optix.madgrad(0.05),
    "cocob": lambda: optix.cocob(),
    "dog": lambda: optix.dog(),
    "dowg": lambda: optix.dowg(),
    "simplified_ademamix": lambda: optix.simplified_ademamix(1e-3, alpha=2.0),
    "acprop": lambda: optix.acprop(0.05),
}


@pytest.mark.parametrize("name", sorted(CONVERGING))
def test_converges_on_a_quadratic(name):
    loss, params = _quadratic()
    final, losses = _train(CONVERGING[name](), loss, params, 600)
    assert float(loss(final)) < 1e-3 * float(losses[0]), name


def test_arguments_are_checked_naming_them():
    with pytest.raises(ValueError, match="momentum"):
        optix.madgrad(momentum=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        optix.madgrad(-1.0)
    with pytest.raises(ValueError, match="alpha"):
        optix.cocob(alpha=0.0)
    with pytest.raises(ValueError, match="eps"):
        optix.cocob(eps=-1.0)
    with pytest.raises(ValueError, match="init_step"):
        optix.dog(init_step=("guess", 1e-6))
    with pytest.raises(ValueError, match="init_step"):
        optix.dog(init_step=("distance", 0.0))
    with pytest.raises(ValueError, match="init_estim_sq_dist"):
        optix.dowg(init_estim_sq_dist=-1.0)
    with pytest.raises(ValueError, match="b1"):
        optix.simplified_ademamix(1e-3, b1=1.0)
    with pytest.raises(ValueError, match="alpha"):
        optix.simplified_ademamix(1e-3, alpha=-1.0)
    with pytest.raises(ValueError, match="b2"):
        optix.acprop(1e-3, b2=1.5)
    state = optix.cocob().init(jnp.zeros(2))
    with pytest.raises(ValueError, match="alpha"):
        optix.set_hyperparams(state, alpha=0.0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        optix.cocob().update(jnp.ones(2), state)
    with pytest.raises(TypeError, match="complex"):
        optix.cocob().init(jnp.zeros(2, jnp.complex64))


@pytest.mark.parametrize("name", sorted(CONVERGING))
def test_low_precision_params_keep_float32_state(name):
    params = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.bfloat16)}
    tx = CONVERGING[name]()
    state = tx.init(params)
    update = jax.jit(tx.update)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: (i + 1) * jnp.ones_like(p), params)
        updates, state = update(grads, state, params)
        params = optix.apply_updates(params, updates)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        where = jax.tree_util.keystr(path)
        if "params0" not in where and jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, where  # only the copy of x_0 keeps the params' dtype


def test_dog_first_step_sizes_follow_init_step(x64):
    """The first DoG step size: r_eps / ||g|| (distance), a (1 + ||x_0||) / ||g|| (heuristic),
    or the given rate (learning_rate)."""
    params, grads = _tree(2), _tree(3)
    gnorm = float(np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in grads.values())))
    pnorm = float(np.sqrt(sum(np.sum(np.asarray(p) ** 2) for p in params.values())))
    cases = {
        ("distance", 0.3): 0.3 / gnorm,
        ("heuristic", 1e-3): 1e-3 * (1 + pnorm) / gnorm,
        ("learning_rate", 0.02): 0.02,
    }
    for init_step, eta in cases.items():
        u = _one_step(optix.dog(init_step=init_step, eps=0.0), params, grads)
        for k in SHAPES:
            np.testing.assert_allclose(u[k], -eta * np.asarray(grads[k]), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# MoMo and MoMo-Adam read the loss (``value=``); the contract suite passes none, so their contract
# checks are here: jit without recompiling, abstract init, a stable state under scan and cond,
# dtypes kept, convergence on the standard problems, a vmapped learning-rate sweep.


def _losses(seed):
    rng = np.random.default_rng(seed + 500)
    return [float(np.exp(rng.uniform(np.log(1e-2), np.log(50.0)))) for _ in range(N_STEPS)]


def _run_with_value(ours, theirs, what, seed):
    grads, params, values = gradient_stream(seed), params_stream(seed), _losses(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    p0 = as_jax(params[0])
    state_ours, state_theirs = ours.init(p0), theirs.init(p0)
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(N_STEPS):
        g, p, v = as_jax(grads[t]), as_jax(params[t]), jnp.float64(values[t])
        u_ours, state_ours = update_ours(g, state_ours, p, value=v)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, state_theirs = update_theirs(g, state_theirs, p, value=v)
        assert_updates_close(u_ours, u_theirs, t, what)


MOMO_PAIRS = {
    "momo": (
        lambda: optix.momo(),
        lambda: optax.contrib.momo(),
    ),
    "momo_wd_bound": (
        lambda: optix.momo(0.5, beta=0.8, lower_bound=0.05, weight_decay=0.01),
        lambda: optax.contrib.momo(0.5, beta=0.8, lower_bound=0.05, weight_decay=0.01),
    ),
    "momo_adapt": (
        lambda: optix.momo(_schedule, weight_decay=0.01, adapt_lower_bound=True),
        lambda: optax.contrib.momo(_schedule, weight_decay=0.01, adapt_lower_bound=True),
    ),
    "momo_adam": (
        lambda: optix.momo_adam(),
        lambda: optax.contrib.momo_adam(),
    ),
    "momo_adam_wd_bound": (
        lambda: optix.momo_adam(0.1, b1=0.8, b2=0.99, lower_bound=0.05, weight_decay=0.01),
        lambda: optax.contrib.momo_adam(0.1, b1=0.8, b2=0.99, lower_bound=0.05, weight_decay=0.01),
    ),
    "momo_adam_adapt": (
        lambda: optix.momo_adam(_schedule, eps=1e-6, weight_decay=0.01, adapt_lower_bound=True),
        lambda: optax.contrib.momo_adam(
            _schedule, eps=1e-6, weight_decay=0.01, adapt_lower_bound=True
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(MOMO_PAIRS))
def test_momo_matches_optax_contrib_step_by_step(name, x64):
    ours, theirs = MOMO_PAIRS[name]
    _run_with_value(ours(), theirs(), name, seed=len(name))


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
    traces = []

    @jax.jit
    def step(params, state, grads, value):
        traces.append(1)
        updates, state = tx.update(grads, state, params, value=value)
        return optix.apply_updates(params, updates), state

    for seed in range(3):
        params, state = step(params, state, _grads(params, seed), jnp.float32(seed + 1))
        assert _signature(state) == _signature(tx.init(params))
    state = optix.set_hyperparams(state, learning_rate=1e-4)
    params, state = step(params, state, _grads(params, 7), jnp.float32(2.0))
    assert len(traces) == 1

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
    final, losses = _train(MOMO[name](lr), loss, params, steps)
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

MECHANIZE_PAIRS = {
    "mechanize_adam": (
        lambda: optix.mechanize(optix.adam(1e-2)),
        lambda: optax.contrib.mechanize(optax.adam(1e-2)),
    ),
    "mechanize_sgd_options": (
        lambda: optix.mechanize(optix.sgd(0.1), weight_decay=0.1, s_init=1e-4, num_betas=3),
        lambda: optax.contrib.mechanize(optax.sgd(0.1), weight_decay=0.1, s_init=1e-4, num_betas=3),
    ),
}


@pytest.mark.parametrize("name", sorted(MECHANIZE_PAIRS))
def test_mechanize_matches_optax_contrib_step_by_step(name, x64):
    ours, theirs = MECHANIZE_PAIRS[name]
    run_teacher_forced(ours(), theirs(), name, seed=len(name))


def test_mechanize_takes_the_first_update_params_as_reference_and_forwards_extras(x64):
    """x_ref is the params of the first update (not those init saw: a loop may load pretrained
    weights in between), and extra keywords such as ``value=`` reach the base optimizer."""
    init_params, params, grads = _tree(4), _tree(5), _tree(6)
    tx = optix.mechanize(optix.sgd(0.1))
    state = tx.init(init_params)
    _, state = tx.update(grads, state, params)
    for k in SHAPES:
        np.testing.assert_array_equal(state.params0[k], params[k])
    seen = []

    def base_update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    spy = optix.GradientTransformation(lambda p: optix.EmptyState(), base_update)
    wrapped = optix.mechanize(spy)
    wrapped.update(grads, wrapped.init(params), params, value=1.0)
    assert seen == [["value"]]
    with pytest.raises(TypeError, match="not a gradient transformation"):
        optix.mechanize(optix.sgd)
    with pytest.raises(ValueError, match="num_betas"):
        optix.mechanize(optix.sgd(0.1), num_betas=0)
    with pytest.raises(ValueError, match="s_init"):
        optix.mechanize(optix.sgd(0.1), s_init=0.0)


# ---------------------------------------------------------------------------------------------
# Sophia. Its Hessian estimator is random; two ways to make both sides see the same estimates:
# a deterministic estimator passed to both, and Hutchinson's estimator on a separable objective
# (a diagonal Hessian, where u * (H u) = diag(H) exactly for every sign vector u).

_CURV = {
    k: 0.5 + np.arange(int(np.prod(s)), dtype=np.float64).reshape(s) / 4 for k, s in SHAPES.items()
}


def _separable(p):
    return sum(jnp.sum(_CURV[k] * p[k] ** 2 + 0.1 * p[k] ** 4) for k in SHAPES)


def _squares_plus_params():
    return optix.stateless(lambda g, p: jax.tree.map(lambda x, y: x * x + 0.1 * jnp.abs(y), g, p))


def _run_with_extra(ours, theirs, what, seed, **static):
    grads, params = gradient_stream(seed), params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    p0 = as_jax(params[0])
    state_ours, state_theirs = ours.init(p0), theirs.init(p0)
    update_ours = jax.jit(lambda g, s, p: ours.update(g, s, p, **static))
    update_theirs = jax.jit(lambda g, s, p: theirs.update(g, s, p, **static))
    for t in range(N_STEPS):
        g, p = as_jax(grads[t]), as_jax(params[t])
        u_ours, state_ours = update_ours(g, state_ours, p)
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, state_theirs = update_theirs(g, state_theirs, p)
        assert_updates_close(u_ours, u_theirs, t, what)


def test_sophia_matches_optax_with_a_shared_estimator(x64):
    est = _squares_plus_params()
    kwargs = dict(b1=0.9, b2=0.95, gamma=0.05, clip_threshold=0.5, update_interval=3)
    ours = optix.sophia(1e-2, weight_decay=0.01, hessian_diagonal_fn=est, **kwargs)
    theirs = optax.contrib.sophia(1e-2, weight_decay=0.01, hessian_diagonal_fn=est, **kwargs)
    _run_with_extra(ours, theirs, "sophia shared estimator", seed=8)


def test_sophia_hutchinson_matches_optax_on_a_separable_objective(x64):
    ours = optix.sophia(_schedule, gamma=0.05, update_interval=4, clip_threshold=None)
    theirs = optax.contrib.sophia(_schedule, gamma=0.05, update_interval=4, clip_threshold=None)
    _run_with_extra(ours, theirs, "sophia hutchinson", seed=9, obj_fn=_separable)


def test_hutchinson_estimate_is_exact_for_diagonal_and_unbiased_otherwise(x64):
    params = _tree(7)
    est = optix.hutchinson_hessian_diag(seed=3)
    h, state = est.update(params, est.init(params), params, obj_fn=_separable)
    for k in SHAPES:
        np.testing.assert_allclose(h[k], 2 * _CURV[k] + 1.2 * np.asarray(params[k]) ** 2)
    a = jnp.asarray(np.random.default_rng(0).standard_normal((4, 4)))
    hess = a @ a.T + 4 * jnp.eye(4)
    f = lambda p: 0.5 * p @ hess @ p  # noqa: E731
    x = jnp.zeros(4)
    state, total = est.init(x), jnp.zeros(4)
    draws = 4000
    step = jax.jit(lambda s: est.update(x, s, x, obj_fn=f))
    for _ in range(draws):
        h, state = step(state)
        total = total + h
    # each draw is diag(H) + sum_{j != i} H_ij u_i u_j: mean diag(H), std ||offdiag row||
    spread = np.sqrt(np.sum(np.asarray(hess) ** 2, 1) - np.diag(hess) ** 2)
    np.testing.assert_allclose(total / draws, np.diag(hess), atol=float(5 * spread.max() / 63))
    with pytest.raises(ValueError, match="obj_fn"):
        est.update(x, state, x)


def test_sophia_paper_order_refreshes_the_hessian_before_the_first_step(x64):
    """optax (default): the first step sees h = 0, so it is clip(m_hat / eps) = a sign step;
    the paper (refresh_first=True, bias_correction=False): h = (1 - b2) diag(H) first."""
    params, grads = _tree(8), _tree(9)
    b1, b2, gamma = 0.965, 0.99, 0.01
    default = optix.scale_by_sophia(b1, b2, gamma=gamma, clip_threshold=1.0)
    u, _ = default.update(grads, default.init(params), params, obj_fn=_separable)
    for k in SHAPES:
        np.testing.assert_allclose(u[k], np.sign(np.asarray(grads[k])), rtol=1e-12)
    paper = optix.scale_by_sophia(
        b1, b2, gamma=gamma, clip_threshold=1.0, refresh_first=True, bias_correction=False
    )
    u, _ = paper.update(grads, paper.init(params), params, obj_fn=_separable)
    for k in SHAPES:
        h = (1 - b2) * (2 * _CURV[k] + 1.2 * np.asarray(params[k]) ** 2)
        expected = np.clip((1 - b1) * np.asarray(grads[k]) / np.maximum(gamma * h, 1e-8), -1, 1)
        np.testing.assert_allclose(u[k], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="update_interval"):
        optix.sophia(1e-3, update_interval=0)
    with pytest.raises(ValueError, match="clip_threshold"):
        optix.sophia(1e-3, clip_threshold=0.0)
    with pytest.raises(TypeError, match="hessian_diagonal_fn"):
        optix.sophia(1e-3, hessian_diagonal_fn=lambda g: g)


def test_sophia_with_hutchinson_converges_on_an_ill_conditioned_quadratic():
    scales = jnp.array([1.0, 10.0, 100.0, 1000.0], jnp.float32)
    loss = lambda p: 0.5 * jnp.sum(scales * (p - 1.0) ** 2)  # noqa: E731
    tx = optix.sophia(0.05, weight_decay=0.0, gamma=0.1, update_interval=2)
    final, losses = _train(tx, loss, jnp.zeros(4, jnp.float32), 400, obj_fn=loss)
    assert float(loss(final)) < 1e-4 * float(losses[0])


# ---------------------------------------------------------------------------------------------
# GaLore. optax runs the SVD in float32 even under x64; ``svd_dtype=jnp.float32`` reproduces it.

GALORE_PAIRS = {
    "galore": (
        lambda: optix.galore(
            1e-2, rank=2, update_proj_gap=5, weight_decay=0.01, svd_dtype=jnp.float32
        ),
        lambda: optax.contrib.galore(1e-2, rank=2, update_proj_gap=5, weight_decay=0.01),
    ),
    "galore_sgd_scale": (
        lambda: optix.galore(
            _schedule,
            rank=3,
            update_proj_gap=7,
            scale=0.25,
            base_optimizer=optix.scale_by_momentum(0.9),
            svd_dtype=jnp.float32,
        ),
        lambda: optax.contrib.galore(
            _schedule, rank=3, update_proj_gap=7, scale=0.25, base_optimizer=optax.trace(0.9)
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(GALORE_PAIRS))
def test_galore_matches_optax_contrib_step_by_step(name, x64):
    ours, theirs = GALORE_PAIRS[name]
    run_teacher_forced(ours(), theirs(), name, seed=len(name))


def test_galore_default_svd_runs_in_the_gradient_precision(x64):
    """By default the projector is orthonormal to float64 precision; optax's float32 SVD is
    orthonormal only to float32's."""
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((6, 9)))}
    ours = optix.scale_by_galore(rank=3)
    _, state = ours.update(params, ours.init(params), params)
    p = np.asarray(state.projector["w"])
    assert p.shape == (9, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.T @ p, np.eye(3), atol=1e-13)
    theirs = optax.contrib.scale_by_galore(rank=3)
    with jax.numpy_dtype_promotion("standard"):
        _, t_state = theirs.update(params, theirs.init(params), params)
    q = np.asarray(t_state.projector["w"])
    assert np.abs(q.T @ q - np.eye(3)).max() > 1e-12


def test_galore_reads_a_3d_leaf_as_the_matrix_its_dimension_numbers_name(x64):
    """A (2, 3, 4) leaf read as rows (0, 2) and column 1 is the (8, 3) matrix x.transpose(0, 2, 1)."""
    rng = np.random.default_rng(1)
    grads = [jnp.asarray(rng.standard_normal((2, 3, 4))) for _ in range(3)]
    dims = optix.GaloreDimensionNumbers(reduction_axis=(0, 2), output_axis=1)
    cube = optix.scale_by_galore(rank=2, update_proj_gap=2, weight_dimension_numbers=dims)
    flat = optix.scale_by_galore(rank=2, update_proj_gap=2)
    s_cube, s_flat = cube.init(grads[0]), flat.init(grads[0].transpose(0, 2, 1).reshape(8, 3))
    for g in grads:
        u_cube, s_cube = cube.update(g, s_cube)
        u_flat, s_flat = flat.update(g.transpose(0, 2, 1).reshape(8, 3), s_flat)
        np.testing.assert_allclose(
            u_cube, u_flat.reshape(2, 4, 3).transpose(0, 2, 1), rtol=1e-12, atol=1e-14
        )
    assert s_cube.projector.shape == (8, 2)  # rows >= columns: projected from the left
    assert s_cube.inner.mu.shape == (2, 3)  # Adam's moments live in the rank-2 space
    with pytest.raises(ValueError, match="weight_dimension_numbers"):
        optix.scale_by_galore(weight_dimension_numbers=optix.GaloreDimensionNumbers(0, 0)).init(
            jnp.ones((3, 4))
        )
    with pytest.raises(ValueError, match="rank"):
        optix.galore(1e-3, rank=0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx = optix.galore(1e-3, base_optimizer=optix.adamw(1.0))
        tx.update(jnp.ones((3, 4)), tx.init(jnp.ones((3, 4))), jnp.ones((3, 4)))
