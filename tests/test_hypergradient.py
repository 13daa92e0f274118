"""hypergradient_descent against NumPy transcriptions of the paper's SGD-HD and Adam-HD, and where
users meet it: a donating jitted step, set_hyperparams, nnx.Optimizer under nnx.jit."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import optix
from tests.reference import N_STEPS
from tests.reference import assert_updates_close
from tests.reference import gradient_stream
from tests.reference import params_stream


def _dot(a: dict, b: dict) -> float:
    return float(sum(np.sum(a[k] * b[k]) for k in a))


class PaperHD:
    """Baydin et al. 2018, Algorithms 1 (SGD-HD) and 3 (Adam-HD), with the multiplicative rule as
    an option: the hypergradient is ``h_t = g_t . du_{t-1}/dalpha``, with ``u_{t-1} = -alpha
    d_{t-1}`` (``d = g`` for SGD, ``m_hat / (sqrt(v_hat) + eps)`` for Adam), and ``alpha_t =
    alpha_{t-1} - beta h_t`` or ``alpha_{t-1} (1 - beta h_t / (|g_t| |du_{t-1}/dalpha|))``."""

    def __init__(self, alpha0, beta, *, adam=False, multiplicative=False, b1=0.9, b2=0.999):
        self.alpha, self.beta, self.adam, self.mult = alpha0, beta, adam, multiplicative
        self.b1, self.b2, self.eps = b1, b2, 1e-8
        self.t, self.m, self.v, self.du_dalpha = 0, None, None, None

    def step(self, g: dict) -> dict:
        if self.du_dalpha is None:
            self.du_dalpha = {k: np.zeros_like(x) for k, x in g.items()}
            self.m = {k: np.zeros_like(x) for k, x in g.items()}
            self.v = {k: np.zeros_like(x) for k, x in g.items()}
        h = _dot(g, self.du_dalpha)
        if self.mult:
            norms = np.sqrt(_dot(g, g)) * np.sqrt(_dot(self.du_dalpha, self.du_dalpha))
            if norms > 0:
                self.alpha = self.alpha * (1 - self.beta * h / norms)
        else:
            self.alpha = self.alpha - self.beta * h
        self.t += 1
        if self.adam:
            self.m = {k: self.b1 * self.m[k] + (1 - self.b1) * g[k] for k in g}
            self.v = {k: self.b2 * self.v[k] + (1 - self.b2) * g[k] ** 2 for k in g}
            d = {
                k: (self.m[k] / (1 - self.b1**self.t))
                / (np.sqrt(self.v[k] / (1 - self.b2**self.t)) + self.eps)
                for k in g
            }
        else:
            d = dict(g)
        self.du_dalpha = {k: -x for k, x in d.items()}
        return {k: -self.alpha * x for k, x in d.items()}


# (inner direction, paper options, alpha0, beta): the paper's scales of beta for each
_SETTINGS = {
    "sgd_hd": (optix.identity, {}, 1e-3, 1e-5),
    "adam_hd": (optix.scale_by_adam, {"adam": True}, 1e-3, 1e-6),
    "sgd_hd_multiplicative": (optix.identity, {"multiplicative": True}, 1e-3, 0.02),
    "adam_hd_multiplicative": (
        optix.scale_by_adam,
        {"adam": True, "multiplicative": True},
        1e-3,
        0.02,
    ),
}


@pytest.mark.parametrize("name", list(_SETTINGS))
def test_matches_the_paper(name, x64):
    """Teacher-forced, float64: the same gradient each step to both, every update compared."""
    inner, options, alpha0, beta = _SETTINGS[name]
    mult = options.get("multiplicative", False)
    tx = optix.hypergradient_descent(inner(), alpha0, beta, multiplicative=mult)
    paper = PaperHD(alpha0, beta, **options)
    grads, params = gradient_stream(0), params_stream(0)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    state = tx.init(as_jax(params[0]))
    update = jax.jit(tx.update)
    rates = []
    for t in range(N_STEPS):
        ours, state = update(as_jax(grads[t]), state, as_jax(params[t]))
        theirs = paper.step(grads[t])
        assert_updates_close(ours, theirs, t, name)
        rate = float(optix.get_hyperparams(state)["learning_rate"])
        np.testing.assert_allclose(rate, paper.alpha, rtol=1e-12)
        rates.append(rate)
    assert N_STEPS >= 100 and len(set(rates)) > N_STEPS // 2  # the rate really moved


def test_zero_hyper_lr_is_the_inner_with_a_fixed_rate(x64):
    tx = optix.hypergradient_descent(optix.scale_by_adam(), 1e-2, 0.0)
    plain = optix.chain(optix.scale_by_adam(), optix.scale_lr(1e-2))
    grads = gradient_stream(1)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    s1, s2 = tx.init(as_jax(grads[0])), plain.init(as_jax(grads[0]))
    for t in range(10):
        u1, s1 = tx.update(as_jax(grads[t]), s1)
        u2, s2 = plain.update(as_jax(grads[t]), s2)
        chex.assert_trees_all_close(u1, u2, rtol=1e-14)


def test_a_rate_too_small_grows_and_converges():
    """On a quadratic, SGD started at a rate 100 times too small speeds up and converges."""
    a = jnp.linspace(1.0, 4.0, 6)

    def loss(x):
        return 0.5 * jnp.sum(a * x**2)

    for multiplicative, beta in ((False, 1e-3), (True, 0.05)):
        tx = optix.hypergradient_descent(
            optix.identity(), 3e-3, beta, multiplicative=multiplicative
        )
        x, state = jnp.ones(6), None
        state = tx.init(x)
        for _ in range(300):
            updates, state = tx.update(jax.grad(loss)(x), state)
            x = optix.apply_updates(x, updates)
        assert float(optix.get_hyperparams(state)["learning_rate"]) > 0.03
        assert float(loss(x)) < 1e-3 * float(loss(jnp.ones(6)))


def test_hyperparameters_reachable_and_settable():
    tx = optix.hypergradient_descent(optix.scale_by_adam(b1=0.8), 1e-2, 1e-4)
    state = tx.init({"w": jnp.zeros(3)})
    hp = optix.get_hyperparams(state)
    assert {"learning_rate", "hyper_lr", "b1"} <= set(hp)
    assert float(hp["hyper_lr"]) == pytest.approx(1e-4)
    state = optix.set_hyperparams(state, hyper_lr=0.5, learning_rate=0.25, b1=0.5)
    hp = optix.get_hyperparams(state)
    assert float(hp["hyper_lr"]) == 0.5 and float(hp["learning_rate"]) == 0.25
    with pytest.raises(ValueError, match="hyper_lr"):
        optix.set_hyperparams(state, hyper_lr=-1.0)
    # the first update (no previous direction) uses the rate as set
    updates, state = tx.update({"w": jnp.ones(3)}, state)
    np.testing.assert_allclose(updates["w"], -0.25 * np.ones(3), rtol=1e-5)


def test_checks_its_arguments():
    with pytest.raises(TypeError, match="learning_rate"):
        optix.hypergradient_descent(optix.identity(), lambda t: 0.1, 1e-3)
    with pytest.raises(ValueError, match="hyper_lr"):
        optix.hypergradient_descent(optix.identity(), 0.1, -1e-3)
    with pytest.raises(TypeError, match="multiplicative"):
        optix.hypergradient_descent(optix.identity(), 0.1, 1e-3, multiplicative=1)


def test_donating_jit_step_without_retrace():
    tx = optix.hypergradient_descent(optix.scale_by_adam(), 1e-2, 1e-6, multiplicative=False)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = tx.init(params)
    chex.clear_trace_counter()

    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    jitted = jax.jit(step, donate_argnums=(0, 1))
    for seed in range(4):
        grads = jax.tree.map(lambda p, s=seed: jnp.full_like(p, 1.0 + s), params)
        old_params, old_state = jax.tree.leaves(params), jax.tree.leaves(state)
        params, state = jitted(params, state, grads)
        assert all(x.is_deleted() for x in old_params)
        assert any(x.is_deleted() for x in old_state)
        if seed == 1:  # a new value between steps: no recompile
            state = optix.set_hyperparams(state, hyper_lr=1e-5)
    assert float(optix.get_hyperparams(state)["learning_rate"]) > 1e-2  # aligned gradients


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)


def test_nnx_optimizer_under_nnx_jit():
    model = _Net(nnx.Rngs(0))
    tx = optix.hypergradient_descent(optix.scale_by_adam(), 1e-2, 1e-5)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)

    def loss(model):
        return jnp.mean((model(x) - 1.0) ** 2)

    chex.clear_trace_counter()

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def step(model, optimizer):
        optimizer.update(model, nnx.grad(loss)(model))

    before = float(loss(model))
    step(model, optimizer)
    optimizer.opt_state = optix.set_hyperparams(optimizer.opt_state, hyper_lr=2e-5)
    for _ in range(5):
        step(model, optimizer)
    hp = optix.get_hyperparams(optimizer.opt_state)
    assert float(hp["hyper_lr"]) == pytest.approx(2e-5)
    assert float(hp["learning_rate"]) != pytest.approx(1e-2, rel=1e-9)  # it adapted
    assert float(loss(model)) < before
