"""optix inside the JAX ecosystem: flax linen's TrainState, flax nnx's Optimizer and State, and
equinox modules, each checked against optax (an independent implementation) or a hand-written
step. The examples built on them (examples/flax_*.py, examples/equinox_mlp.py) are run by
tests/test_examples.py."""

from __future__ import annotations

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from flax.training.train_state import TrainState

import optix

# --- flax linen ---------------------------------------------------------------------------------


def test_train_state_apply_gradients_is_one_optix_step():
    model = nn.Dense(3)
    params = model.init(jax.random.key(0), jnp.ones((1, 2)))["params"]
    tx = optix.partition(
        {"decay": optix.adamw(1e-2, weight_decay=0.1), "plain": optix.sgd(0.1, momentum=0.9)},
        {"bias": "plain", "**": "decay"},
    )
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    opt_state, manual = tx.init(params), params
    for seed in range(3):
        grads = jax.tree.map(lambda p, s=seed: jnp.full_like(p, 0.5 - s), params)
        state = state.apply_gradients(grads=grads)
        updates, opt_state = tx.update(grads, opt_state, manual)
        manual = optix.apply_updates(manual, updates)
    assert int(state.step) == 3
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(manual), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(opt_state), strict=True):
        np.testing.assert_array_equal(a, b)


# --- flax nnx -----------------------------------------------------------------------------------


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(2, 4, rngs=rngs), nnx.Linear(4, 1, rngs=rngs)])

    def __call__(self, x):
        return self.layers[1](jnp.tanh(self.layers[0](x)))


_GROUPS = {"**/bias": "bias", "layers/0/**": "first", "**": "rest"}
_OPTIX = {
    "bias": optix.sgd(0.1),
    "first": optix.adam(1e-2),
    "rest": optix.adamw(1e-2, weight_decay=0.1),
}
_OPTAX = {
    "bias": optax.sgd(0.1),
    "first": optax.adam(1e-2),
    "rest": optax.adamw(1e-2, weight_decay=0.1),
}


def _group_of(path: str) -> str:
    return "bias" if "bias" in path else "first" if path.startswith("layers/0/") else "rest"


def _loss(model):
    x = jnp.linspace(-1.0, 1.0, 10).reshape(5, 2)
    return jnp.mean((model(x) - 1.0) ** 2)


def _optax_reference(params: dict[str, jax.Array], grads_fn, steps: int) -> dict[str, jax.Array]:
    """Each leaf trained alone by its group's optax optimizer (leaves do not interact: none of
    the three optimizers computes anything across leaves)."""
    states = {p: _OPTAX[_group_of(p)].init(x) for p, x in params.items()}
    for _ in range(steps):
        grads = grads_fn(params)
        for p in params:
            with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict mode
                u, states[p] = _OPTAX[_group_of(p)].update(grads[p], states[p], params[p])
            params = {**params, p: optax.apply_updates(params[p], u)}
    return params


def _by_path(state) -> dict[str, jax.Array]:
    flat = nnx.to_flat_state(state)
    return {"/".join(map(str, k)): v.get_value() for k, v in flat}


def test_partition_on_an_nnx_state_gives_each_group_its_optimizer():
    model = _Net(nnx.Rngs(0))
    start = _by_path(nnx.state(model, nnx.Param))
    tx = optix.partition(_OPTIX, _GROUPS)

    # directly on nnx.State: each array sits in a Param node, paths end in /value
    params = nnx.state(model, nnx.Param)
    opt_state = tx.init(params)
    for label in ("first", "rest"):  # the Adam moments of each group cover its leaves only
        moments = optix._paths.leaf_paths(opt_state.inner_states[label][0].mu)
        covered = {p.removesuffix("/value") for p in moments}
        assert covered == {p for p in start if _group_of(p) == label}, (label, covered)
    assert all(x.shape == () for x in jax.tree.leaves(opt_state.inner_states["bias"]))  # plain SGD
    for _ in range(3):
        grads = nnx.grad(_loss)(model)
        updates, opt_state = tx.update(nnx.state(grads, nnx.Param), opt_state, params)
        params = optix.apply_updates(params, updates)
        nnx.update(model, params)

    @jax.jit
    @jax.grad
    def grads_fn(flat):  # _loss written out on plain arrays: nnx.Linear is x @ kernel + bias
        x = jnp.linspace(-1.0, 1.0, 10).reshape(5, 2)
        h = jnp.tanh(x @ flat["layers/0/kernel"] + flat["layers/0/bias"][None])
        return jnp.mean((h @ flat["layers/1/kernel"] + flat["layers/1/bias"][None] - 1.0) ** 2)

    expected = _optax_reference(start, grads_fn, 3)
    got = _by_path(nnx.state(model, nnx.Param))
    assert set(got) == set(expected) and len(got) == 4
    for path in got:
        np.testing.assert_allclose(got[path], expected[path], rtol=3e-5, atol=1e-7, err_msg=path)


def test_nnx_optimizer_with_a_partition_matches_a_manual_step():
    model, manual = _Net(nnx.Rngs(0)), _Net(nnx.Rngs(0))
    tx = optix.partition(_OPTIX, _GROUPS)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    params = nnx.as_pure(nnx.state(manual, nnx.Param))  # what nnx.Optimizer hands to optix
    opt_state = tx.init(params)
    for _ in range(3):
        optimizer.update(model, nnx.grad(_loss)(model))
        grads = nnx.as_pure(nnx.state(nnx.grad(_loss)(manual), nnx.Param))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optix.apply_updates(params, updates)
        nnx.update(manual, params)
    assert int(optimizer.step[...]) == 3
    got, want = _by_path(nnx.state(model, nnx.Param)), _by_path(nnx.state(manual, nnx.Param))
    for path in want:
        np.testing.assert_array_equal(got[path], want[path], err_msg=path)
    # the optimizer state is reachable through optix's state helpers
    assert float(optix.state_get(nnx.as_pure(optimizer.opt_state), "rest/weight_decay")) == (
        pytest.approx(0.1)
    )


# Optimizers whose per-param state is a node (block stacks, tuples of accumulators, quantized
# arrays), which nnx.Optimizer stores back as a mapping of its fields after each step.
_NODE_STATES = {
    "shampoo": lambda: optix.shampoo(1e-2, precondition_frequency=1),
    "soap": lambda: optix.soap(1e-2, precondition_frequency=1),
    "sm3": lambda: optix.sm3(1e-1),
    "quantize_state(adam)": lambda: optix.quantize_state(optix.adam(1e-2), min_size=1),
    "quantize_state(adam, bits=4)": lambda: optix.quantize_state(
        optix.adam(1e-2), bits=4, min_size=1
    ),
    "psgd_kron": lambda: optix.psgd_kron(1e-2),
    # NorMuon's per-neuron second moment sits at its param's path with another shape
    "normuon": lambda: optix.normuon(1e-2, orthogonalize="polar_express"),
}


@pytest.mark.parametrize("name", sorted(_NODE_STATES))
def test_nnx_optimizer_with_node_states_matches_a_manual_step(name):
    model, manual = _Net(nnx.Rngs(0)), _Net(nnx.Rngs(0))
    tx = _NODE_STATES[name]()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    params = nnx.as_pure(nnx.state(manual, nnx.Param))
    opt_state = tx.init(params)
    chex.clear_trace_counter()

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def step(model, optimizer):
        optimizer.update(model, nnx.grad(_loss)(model))

    # the same compiled math on both sides (these states round: eigenbases, quantization codes)
    grads_of = nnx.jit(lambda m: nnx.as_pure(nnx.state(nnx.grad(_loss)(m), nnx.Param)))
    manual_update = jax.jit(tx.update)
    for _ in range(3):
        step(model, optimizer)
        updates, opt_state = manual_update(grads_of(manual), opt_state, params)
        params = optix.apply_updates(params, updates)
        nnx.update(manual, params)
    got, want = _by_path(nnx.state(model, nnx.Param)), _by_path(nnx.state(manual, nnx.Param))
    for path in want:
        np.testing.assert_allclose(got[path], want[path], rtol=1e-5, atol=1e-7, err_msg=path)
    # the same state under nnx: quantize_state quantizes the same leaves (under nnx it used to
    # quantize none, silently), and every node type is kept
    quantized = lambda x: isinstance(x, optix.QuantizedArray)  # noqa: E731
    count = lambda s: sum(map(quantized, jax.tree.leaves(s, is_leaf=quantized)))  # noqa: E731
    assert count(nnx.as_pure(optimizer.opt_state)) == count(opt_state)
    assert count(opt_state) > 0 or not name.startswith("quantize")
    assert jax.tree.structure(nnx.as_pure(optimizer.opt_state)) == jax.tree.structure(opt_state)


def _nnx_adam():
    schedule = optix.schedules.warmup_cosine_decay(0.0, 1e-2, 2, 20)
    return optix.named_chain(adam=optix.adamw(schedule, weight_decay=0.1), ema=optix.param_ema(0.9))


def _nnx_step():
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def step(model, optimizer):
        optimizer.update(model, nnx.grad(_loss)(model))

    return step


def test_nnx_optimizer_hyperparameters_set_without_retrace_and_checkpoint(tmp_path):
    """set_hyperparams on ``opt_state`` keeps its nnx Variables: the next ``nnx.jit`` step is not
    retraced, and a checkpoint saved afterwards restores into a fresh optimizer."""
    model = _Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, _nnx_adam(), wrt=nnx.Param)
    step = _nnx_step()
    step(model, optimizer)
    before = jax.tree.structure(optimizer.opt_state)
    optimizer.opt_state = optix.set_hyperparams(
        optimizer.opt_state, weight_decay=0.05, learning_rate_scale=0.5
    )
    assert jax.tree.structure(optimizer.opt_state) == before
    hp = optix.get_hyperparams(optimizer.opt_state)
    assert all(type(v) is type(jnp.zeros(())) for v in hp.values())  # arrays, not Variables
    assert float(hp["weight_decay"]) == pytest.approx(0.05)
    step(model, optimizer)
    step(model, optimizer)
    assert float(optix.get_hyperparams(optimizer.opt_state)["learning_rate_scale"]) == 0.5

    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", nnx.state(optimizer))
        ckpt.wait_until_finished()
        fresh = nnx.Optimizer(_Net(nnx.Rngs(1)), _nnx_adam(), wrt=nnx.Param)
        nnx.update(fresh, ckpt.restore(tmp_path / "ckpt", nnx.state(fresh)))
    saved, restored = nnx.state(optimizer), nnx.state(fresh)
    assert jax.tree.structure(restored) == jax.tree.structure(saved)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(optix.get_hyperparams(fresh.opt_state)["weight_decay"]) == pytest.approx(0.05)


def test_nnx_optimizer_state_through_the_state_helpers(tmp_path):
    model = _Net(nnx.Rngs(0))
    tx = _nnx_adam()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step = _nnx_step()
    step(model, optimizer)
    state = optimizer.opt_state
    pure = nnx.as_pure(state)

    # state_get: arrays, as in the pure state
    mu = optix.state_get(state, "adam/mu")
    assert all(type(x) is type(jnp.zeros(())) for x in jax.tree.leaves(mu))
    np.testing.assert_array_equal(
        mu["layers"][0]["kernel"], pure["adam"][0].mu["layers"][0]["kernel"]
    )
    count = optix.state_get(state, "adam/0/count")
    assert type(count) is type(jnp.zeros(())) and int(count) == 1

    # state_set keeps the Variables: no retrace
    optimizer.opt_state = optix.state_set(state, "adam/0/count", 0)
    assert jax.tree.structure(optimizer.opt_state) == jax.tree.structure(state)
    optimizer.opt_state = optix.state_set(
        optimizer.opt_state,
        "adam/nu",
        jax.tree.map(jnp.zeros_like, optix.state_get(state, "adam/nu")),
    )
    step(model, optimizer)
    assert int(optix.state_get(optimizer.opt_state, "adam/0/count")) == 1

    # paths and the printed tree: each array once, no `value` level
    assert optix.state_paths(state) == optix.state_paths(pure)
    text = optix.format_state(state)
    assert text == optix.format_state(pure)
    assert "value" not in text and text.count("learning_rate_scale: float32[] = 1") == 1

    # averaged_params reads the EMA as arrays
    average = optix.averaged_params(state)
    np.testing.assert_array_equal(
        average["layers"][1]["bias"], pure["ema"].ema["layers"][1]["bias"]
    )
    assert all(type(x) is type(jnp.zeros(())) for x in jax.tree.leaves(average))

    # check_state / restore_state: the Variables' arrays, also from a target-less restore
    params = nnx.state(model, nnx.Param)
    check_state = optix._checkpoint.check_state
    restore_state = optix._checkpoint.restore_state
    check_state(tx, optimizer.opt_state, params)
    check_state(tx, optimizer.opt_state, nnx.as_pure(params))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", optimizer.opt_state)
        ckpt.wait_until_finished()
        raw = ckpt.restore(tmp_path / "ckpt")
    rebuilt = restore_state(tx, raw, nnx.as_pure(params))
    want = nnx.as_pure(optimizer.opt_state)
    assert optix.state_paths(rebuilt) == optix.state_paths(want)
    for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    other = optix.named_chain(adam=optix.adam(1e-2), ema=optix.param_ema(0.9))
    with pytest.raises(ValueError, match="no leaf at 'adam/1/hyperparams/values/learning_rate'"):
        restore_state(other, raw, params)


# --- equinox ------------------------------------------------------------------------------------


def _mlp():
    return eqx.nn.MLP(2, 1, width_size=4, depth=1, activation=jnp.tanh, key=jax.random.key(0))


def _bias_tree(model, on_bias, on_weight):
    def biases(m):
        return [layer.bias for layer in m.layers]

    tree = jax.tree.map(lambda _: on_weight, model)
    return eqx.tree_at(biases, tree, replace=[on_bias] * len(model.layers))


def test_an_equinox_module_is_a_mask_tree_never_a_function():
    model = _mlp()
    params = eqx.filter(model, eqx.is_array)
    grads = jax.tree.map(jnp.ones_like, params)
    mask = _bias_tree(model, on_bias=False, on_weight=True)  # a callable pytree of bools
    assert callable(mask)

    # masked: weights get SGD's step, biases pass through untouched
    tx = optix.masked(optix.sgd(0.5), mask)
    updates, _ = tx.update(grads, tx.init(params), params)
    for layer in updates.layers:
        np.testing.assert_array_equal(layer.weight, -0.5 * jnp.ones_like(layer.weight))
        np.testing.assert_array_equal(layer.bias, jnp.ones_like(layer.bias))

    # adamw's mask: decay on the weights only, checked leaf by leaf against optax
    tx = optix.adamw(1e-2, weight_decay=0.5, mask=mask)
    updates, _ = tx.update(grads, tx.init(params), params)
    for layer, new in zip(model.layers, updates.layers, strict=True):
        for leaf, decay in [(layer.weight, 0.5), (layer.bias, 0.0)]:
            ref = optax.adamw(1e-2, weight_decay=decay)
            with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict mode
                want, _ = ref.update(jnp.ones_like(leaf), ref.init(leaf), leaf)
            got = new.weight if leaf is layer.weight else new.bias
            # optix keeps b2 as a float32 hyperparameter and uses the same rounded value in the
            # moment update and its bias correction; optax mixes the Python float and the
            # float32 one, so the first Adam step differs by up to ~1e-5 relative.
            np.testing.assert_allclose(got, want, rtol=3e-5)

    # partition with an equinox module of labels, run on the filtered model
    labels = _bias_tree(model, on_bias="b", on_weight="w")
    tx = optix.partition({"w": optix.sgd(0.1), "b": optix.sgd(1.0)}, labels)
    updates, _ = tx.update(grads, tx.init(params), params)
    for layer in updates.layers:
        np.testing.assert_allclose(layer.weight, -0.1 * jnp.ones_like(layer.weight))
        np.testing.assert_allclose(layer.bias, -1.0 * jnp.ones_like(layer.bias))


def test_equinox_training_step_matches_optax():
    model = _mlp()
    tx, ref = optix.adamw(1e-2, weight_decay=0.1), optax.adamw(1e-2, weight_decay=0.1)
    x = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)

    @eqx.filter_jit
    def step(model, state, opt):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean(jax.vmap(m)(x) ** 2))(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state

    ours, theirs = model, model
    s_ours = tx.init(eqx.filter(model, eqx.is_array))
    s_theirs = ref.init(eqx.filter(model, eqx.is_array))
    for _ in range(5):
        ours, s_ours = step(ours, s_ours, tx)
        with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict mode
            theirs, s_theirs = step(theirs, s_theirs, ref)
    leaves_ours = jax.tree.leaves(eqx.filter(ours, eqx.is_array))
    leaves_theirs = jax.tree.leaves(eqx.filter(theirs, eqx.is_array))
    for a, b in zip(leaves_ours, leaves_theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=3e-5, atol=1e-7)  # float32 b2: see above
