"""The contract suite: every optimizer in the registry goes through the same checks."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.cases import CASES
from tests.cases import IDS
from tests.problems import PROBLEMS
from tests.problems import TARGETS
from tests.problems import train
from tests.reference import train_scanned


def _params(dtype=jnp.float32):
    rng = np.random.default_rng(1)
    return {
        "scalar": jnp.asarray(rng.normal(), dtype),
        "vector": jnp.asarray(rng.normal(size=5), dtype),
        "layer": [jnp.asarray(rng.normal(size=(3, 4)), dtype)],
    }


def _grads(params, seed=2):
    rng = np.random.default_rng(seed)

    def leaf(p):
        g = rng.normal(size=p.shape)
        if jnp.iscomplexobj(p):
            g = g + 1j * rng.normal(size=p.shape)
        return jnp.asarray(g, p.dtype)

    return jax.tree.map(leaf, params)


def _signature(tree):
    return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_second_step_does_not_recompile(case):
    tx = case.make()
    chex.clear_trace_counter()  # chex counts per definition site, which every case shares

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    for seed in range(3):
        params, state = step(params, state, _grads(params, seed))
    state = optix.set_hyperparams(state, learning_rate=1e-4)  # a new rate: same compiled step
    params, state = step(params, state, _grads(params, 7))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_init_works_through_eval_shape(case):
    tx = case.make()
    params = _params()
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    abstract = jax.eval_shape(tx.init, shapes)
    assert _signature(abstract) == _signature(tx.init(params))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_is_stable_across_update_scan_and_cond(case):
    tx = case.make()
    params = _params()
    state = tx.init(params)
    _, new_state = jax.jit(tx.update)(_grads(params), state, params)
    assert _signature(new_state) == _signature(state)
    assert_scan_and_cond_keep(tx, state, params)


def assert_scan_and_cond_keep(tx, state, params, *, compiled=True, **extra):
    """``tx.update`` gives back a state that is a valid ``lax.scan`` carry and ``lax.cond``
    branch for ``state``, run compiled or, with ``compiled=False``, only traced: both are type
    checks made while tracing, so ``eval_shape`` makes them without compiling."""
    run = (lambda f, *args: jax.jit(f)(*args)) if compiled else jax.eval_shape

    def body(state, grads):
        return tx.update(grads, state, params, **extra)[1], None

    def maybe_step(flag, state):
        return jax.lax.cond(flag, lambda s: body(s, _grads(params))[0], lambda s: s, state)

    grads = jax.tree.map(lambda g: jnp.stack([g, -g]), _grads(params))
    scanned, _ = run(lambda s: jax.lax.scan(body, s, grads), state)
    assert _signature(scanned) == _signature(state)
    assert _signature(run(maybe_step, True, state)) == _signature(state)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.complex64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtypes_are_kept(case, dtype):
    if jnp.issubdtype(dtype, jnp.complexfloating) and not case.supports_complex:
        with pytest.raises((TypeError, ValueError), match="complex"):
            case.make().init(_params(dtype))
        return
    tx = case.make()
    params = _params(dtype)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(_grads(params), state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    chex.assert_tree_all_finite(updates)
    new_params = optix.apply_updates(params, updates)
    assert [x.dtype for x in jax.tree.leaves(new_params)] == [dtype] * 3
    for name, value in optix.get_hyperparams(state).items():
        assert value.dtype == jnp.float32, name
    if "b2" in optix.get_hyperparams(state):
        assert float(optix.get_hyperparams(state)["b2"]) < 1.0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_chains_with_other_transforms(case):
    """chain(scale(0.5), opt) on g equals opt on g / 2; identities around it change nothing."""
    params = _params()
    grads = _grads(params)
    half = jax.tree.map(lambda g: g / 2, grads)
    plain = case.make()
    expected, _ = plain.update(half, plain.init(params), params)
    tx = optix.chain(optix.identity(), optix.scale(0.5), case.make(), optix.identity())
    got, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    chex.assert_trees_all_close(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_converges(case, problem):
    loss, params = PROBLEMS[problem]()
    steps, fraction = TARGETS[problem]
    final, losses = train(case.make_for(problem), loss, params, steps)
    first, last = float(losses[0]), float(loss(final))
    assert np.isfinite(last)
    assert last < fraction * first, f"{case.name} on {problem}: {first:.4g} -> {last:.4g}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_over_learning_rates_is_a_sweep(case):
    """One vmapped step over a batch of states equals separate runs, one per learning rate."""
    params = _params()
    grads = _grads(params)
    tx = case.make()
    rates = jnp.array([1e-3, 1e-2, 1e-1], jnp.float32)
    states = jax.vmap(lambda lr: optix.set_hyperparams(tx.init(params), learning_rate=lr))(rates)
    batched, _ = jax.jit(jax.vmap(tx.update, in_axes=(None, 0, None)))(grads, states, params)
    for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
        single_tx = case.make(learning_rate=lr)
        single, _ = single_tx.update(grads, single_tx.init(params), params)
        row = jax.tree.map(lambda b, i=i: b[i], batched)
        chex.assert_trees_all_close(row, single, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_over_params(case):
    tx = case.make()
    params = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), _params())
    grads = jax.tree.map(lambda x: jnp.stack([x, -x]), _grads(_params()))
    states = jax.vmap(tx.init)(params)
    updates, _ = jax.jit(jax.vmap(tx.update))(grads, states, params)
    for i in range(2):
        p_i = jax.tree.map(lambda x, i=i: x[i], params)
        g_i = jax.tree.map(lambda x, i=i: x[i], grads)
        single, _ = tx.update(g_i, tx.init(p_i), p_i)
        row = jax.tree.map(lambda b, i=i: b[i], updates)
        chex.assert_trees_all_close(row, single, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_params_none_is_a_clear_error_exactly_when_needed(case):
    tx = case.make()
    params = _params()
    state = tx.init(params)
    if case.needs_params:
        with pytest.raises(ValueError, match="needs the current parameters"):
            tx.update(_grads(params), state, None)
    else:
        updates, _ = tx.update(_grads(params), state, None)
        assert jax.tree.structure(updates) == jax.tree.structure(params)


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
    final, losses = train_scanned(CONVERGING[name](), loss, params, 600)
    assert float(loss(final)) < 1e-3 * float(losses[0]), name
