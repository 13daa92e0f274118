"""partition: each labelled group of leaves gets exactly its own optimizer's update."""

from __future__ import annotations

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optix
from optix import _keypath
from optix import _paths
from optix.wrappers._masked import masked
from optix.wrappers._partition import PartitionState
from optix.wrappers._partition import partition
from tests.cases import CASES
from tests.cases import IDS
from tests.tracing import TraceCounter


def _flax_params(seed: int = 0):
    rng = np.random.default_rng(seed)

    def a(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {
        "params": {
            "encoder": {
                "Dense_0": {"kernel": a(3, 4), "bias": a(4)},
                "LayerNorm_0": {"scale": a(4), "bias": a(4)},
            },
            "head": {"kernel": a(4, 2), "bias": a(2)},
        }
    }


def _grads(params, seed: int):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


# Per-layer setup: a slower encoder, and no weight decay on biases and norm scales.
TRANSFORMS = {
    "enc_decay": lambda: optix.adamw(1e-3, weight_decay=0.1),
    "enc_plain": lambda: optix.adam(1e-3),
    "decay": lambda: optix.adamw(1e-2, weight_decay=0.1),
    "plain": lambda: optix.adam(1e-2),
}
OPTAX = {
    "enc_decay": optax.adamw(1e-3, weight_decay=0.1),
    "enc_plain": optax.adam(1e-3),
    "decay": optax.adamw(1e-2, weight_decay=0.1),
    "plain": optax.adam(1e-2),
}
PATTERNS = {
    "params/encoder/**/bias": "enc_plain",
    "params/encoder/LayerNorm_*/scale": "enc_plain",
    "params/encoder": "enc_decay",
    "**/bias": "plain",
    "**": "decay",
}
EXPECTED_LABELS = {
    "params/encoder/Dense_0/kernel": "enc_decay",
    "params/encoder/Dense_0/bias": "enc_plain",
    "params/encoder/LayerNorm_0/scale": "enc_plain",
    "params/encoder/LayerNorm_0/bias": "enc_plain",
    "params/head/kernel": "decay",
    "params/head/bias": "plain",
}


def _label_tree(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: EXPECTED_LABELS[_keypath.path_str(path)], params
    )


def _make():
    return partition({k: f() for k, f in TRANSFORMS.items()}, PATTERNS)


def _run(tx, params, steps, seed0=10):
    """``steps`` jitted steps; returns the updates of every step and the trace count."""
    traces = TraceCounter()

    @jax.jit
    @traces
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state, updates

    state = tx.init(params)
    history = []
    for i in range(steps):
        params, state, updates = step(params, state, _grads(params, seed0 + i))
        history.append(updates)
    return history, state, traces.count


def _assert_trees_close(got, expected, rtol=1e-6, atol=1e-8):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


def test_each_leaf_gets_exactly_its_own_optimizers_update():
    params = _flax_params()
    steps = 4
    history, _, traces = _run(_make(), params, steps)
    assert traces == 1
    paths = _paths.leaf_paths(params)
    assert dict(zip(paths, jax.tree.leaves(_label_tree(params)), strict=True)) == EXPECTED_LABELS
    # Reference: the standalone optimizer on that leaf alone, fed the same gradients.
    for index, (name, leaf) in enumerate(zip(paths, jax.tree.leaves(params), strict=True)):
        tx = TRANSFORMS[EXPECTED_LABELS[name]]()
        p, s = leaf, tx.init(leaf)
        for i in range(steps):
            g = jax.tree.leaves(_grads(params, 10 + i))[index]  # _grads reads only shapes
            u, s = tx.update(g, s, p)
            got = jax.tree.leaves(history[i])[index]
            np.testing.assert_allclose(got, u, rtol=1e-6, atol=1e-9, err_msg=f"{name} step {i}")
            p = optix.apply_updates(p, u)


def test_matches_optax_multi_transform():
    params = _flax_params()
    history, _, _ = _run(_make(), params, 4)
    ref = optax.multi_transform(OPTAX, _label_tree(params))
    with jax.numpy_dtype_promotion("standard"):  # optax relies on standard promotion
        state, p, ref_step = ref.init(params), params, jax.jit(ref.update)
        for i in range(4):
            u, state = ref_step(_grads(p, 10 + i), state, p)
            _assert_trees_close(history[i], u, rtol=1e-5, atol=1e-8)
            p = optax.apply_updates(p, u)


def test_label_tree_function_and_patterns_agree_exactly():
    params = _flax_params()
    specs = [PATTERNS, _label_tree(params), _label_tree]
    runs = [
        _run(partition({k: f() for k, f in TRANSFORMS.items()}, s), params, 3)[0] for s in specs
    ]
    for other in runs[1:]:
        for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(a, b)


def test_each_inner_state_covers_only_its_own_leaves():
    params = _flax_params()
    state = _make().init(params)
    assert isinstance(state, PartitionState)
    assert sorted(state.inner_states) == sorted(TRANSFORMS)
    for label, inner in state.inner_states.items():
        mu = inner[0].mu
        slots = jax.tree.leaves(mu, is_leaf=lambda x: x is None)
        present = [
            p for p, x in zip(_paths.leaf_paths(params), slots, strict=True) if x is not None
        ]
        assert present == sorted(p for p, lab in EXPECTED_LABELS.items() if lab == label)


def test_hyperparams_are_reachable_by_label_and_settable_without_recompiling():
    params = _flax_params()
    tx = _make()
    state = tx.init(params)
    hp = optix.get_hyperparams(state)
    assert "inner_states/enc_decay/2/learning_rate" in hp
    assert "inner_states/plain/1/learning_rate" in hp
    np.testing.assert_allclose(hp["inner_states/enc_plain/1/learning_rate"], 1e-3, rtol=1e-7)
    state = optix.set_hyperparams(state, **{"enc_plain/learning_rate": 0.0})
    hp = optix.get_hyperparams(state)
    assert float(hp["inner_states/enc_plain/1/learning_rate"]) == 0.0
    np.testing.assert_allclose(hp["inner_states/plain/1/learning_rate"], 1e-2, rtol=1e-7)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, grads):
        return tx.update(grads, state, params)

    u0, state = step(tx.init(params), _grads(params, 1))
    state = optix.set_hyperparams(state, **{"enc_plain/learning_rate": 0.0})
    u1, _ = step(state, _grads(params, 2))
    for path, label in EXPECTED_LABELS.items():
        leaf = jax.tree.leaves(u1)[_paths.leaf_paths(params).index(path)]
        assert bool(jnp.all(leaf == 0)) == (label == "enc_plain"), path


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_optimizer_works_as_a_member(case):
    rng = np.random.default_rng(3)
    params = {
        "a": {
            "w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=4), jnp.float32),
        },
        "c": jnp.asarray(rng.normal(size=5), jnp.float32),
    }
    tx = partition({"case": case.make(), "other": optix.sgd(0.1)}, {"a": "case", "**": "other"})
    history, state, traces = _run(tx, params, 2)
    assert traces == 1
    assert jax.tree.structure(state) == jax.tree.structure(tx.init(params))
    # References: each optimizer alone on its own leaves (same leaf order, so noise keys match).
    for _, keys, ref_tx in [("case", ["a"], case.make()), ("other", ["c"], optix.sgd(0.1))]:
        sub = {k: params[k] for k in keys}
        s, full = ref_tx.init(sub), params
        for i in range(2):
            g = _grads(full, 10 + i)
            u, s = ref_tx.update({k: g[k] for k in keys}, s, sub)
            _assert_trees_close({k: history[i][k] for k in keys}, u, rtol=1e-5, atol=1e-7)
            sub = optix.apply_updates(sub, u)
            full = optix.apply_updates(full, history[i])


def test_labels_from_updates_when_params_are_not_given():
    params = _flax_params()
    fn = lambda tree: jax.tree.map(lambda x: "w" if x.ndim > 1 else "v", tree)  # noqa: E731
    tx = partition({"w": optix.sgd(0.1), "v": optix.sgd(1.0)}, fn)
    grads = _grads(params, 0)
    updates, _ = tx.update(grads, tx.init(params))
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(u, -(0.1 if g.ndim > 1 else 1.0) * g, rtol=1e-6)


def test_init_through_eval_shape_and_state_stable_in_scan_and_cond():
    params = _flax_params()
    tx = _make()
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    abstract = jax.eval_shape(tx.init, shapes)
    state = tx.init(params)
    sig = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])  # noqa: E731
    assert sig(abstract) == sig(state)
    grads = jax.tree.map(lambda g: jnp.stack([g, -g]), _grads(params, 0))
    scanned, _ = jax.lax.scan(lambda s, g: (tx.update(g, s, params)[1], None), state, grads)
    assert sig(scanned) == sig(state)
    cond = jax.lax.cond(
        True, lambda s: tx.update(_grads(params, 1), s, params)[1], lambda s: s, state
    )
    assert sig(cond) == sig(state)


def test_nests_inside_masked_with_labels_written_for_the_full_tree():
    """Inside masked, partition sees None holes; a label tree for the full params still works."""
    params = _flax_params()
    labels = jax.tree.map(lambda x: "w" if x.ndim > 1 else "v", params)
    inner = partition({"w": optix.sgd(0.1), "v": optix.adam(0.1)}, labels)
    tx = masked(inner, {"params/head/**": True, "**": False})
    grads = _grads(params, 0)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for u, g in zip(
        jax.tree.leaves(updates["params"]["encoder"]),
        jax.tree.leaves(grads["params"]["encoder"]),
        strict=True,
    ):
        np.testing.assert_array_equal(u, g)
    np.testing.assert_allclose(
        updates["params"]["head"]["kernel"], -0.1 * grads["params"]["head"]["kernel"], rtol=1e-6
    )
    adam = optix.adam(0.1)
    expected, _ = adam.update(
        grads["params"]["head"]["bias"], adam.init(params["params"]["head"]["bias"])
    )
    np.testing.assert_allclose(updates["params"]["head"]["bias"], expected, rtol=1e-6)


def test_extra_keyword_arguments_reach_members_that_take_them():
    seen = []

    def record(updates, state, params=None, **extra):
        seen.append(extra)
        return updates, state

    def strict(updates, state, params=None):
        return updates, state

    tx = partition(
        {
            "x": optix.GradientTransformation(lambda p: (), record),
            "y": optix.GradientTransformation(lambda p: (), strict),
        },
        {"x": "x", "y": "y"},
    )
    params = {"x": jnp.ones(2), "y": jnp.ones(2)}
    tx.update(params, tx.init(params), params, value=jnp.ones([]))
    assert len(seen) == 1 and set(seen[0]) == {"value"}


# ---- errors -------------------------------------------------------------------------------------


def test_unmatched_leaf_names_its_path():
    tx = partition({"a": optix.sgd(0.1)}, {"params/encoder/**": "a"})
    with pytest.raises(ValueError, match="params/head/bias"):
        tx.init(_flax_params())


def test_label_without_a_transform_is_named():
    labels = {"params/head/kernel": "typo", **PATTERNS}
    tx = partition({k: f() for k, f in TRANSFORMS.items()}, labels)
    with pytest.raises(ValueError, match="'typo'.*no\\s+transform|params/head/kernel"):
        tx.init(_flax_params())


def test_transform_without_leaves_is_named():
    tx = partition({**{k: f() for k, f in TRANSFORMS.items()}, "unused": optix.sgd(1.0)}, PATTERNS)
    with pytest.raises(ValueError, match="'unused'"):
        tx.init(_flax_params())


def test_label_tree_with_the_wrong_structure_names_the_path():
    params = _flax_params()
    labels = _label_tree(params)
    del labels["params"]["head"]["bias"]
    for is_tree in [None, True]:  # a nested dict is never read as patterns
        tx = partition({k: f() for k, f in TRANSFORMS.items()}, labels, labels_are_tree=is_tree)
        with pytest.raises(ValueError, match="'params/head/bias' is in params"):
            tx.init(params)


def test_non_string_label_names_the_path():
    tx = partition({"a": optix.sgd(0.1)}, {"w": "a", "b": 1})
    with pytest.raises(TypeError, match="'b'"):
        tx.init({"w": jnp.ones(2), "b": jnp.ones(2)})


def test_bad_construction_arguments():
    with pytest.raises(TypeError, match="non-empty dict"):
        partition({}, {"**": "a"})
    with pytest.raises(ValueError, match="without '/'"):
        partition({"a/b": optix.sgd(0.1)}, {"**": "a/b"})
    with pytest.raises(TypeError, match="transforms\\['a'\\]"):
        partition({"a": optix.sgd}, {"**": "a"})
    with pytest.raises(TypeError, match="labels"):
        partition({"a": optix.sgd(0.1)}, None)
    with pytest.raises(TypeError, match="labels_are_tree"):
        partition({"a": optix.sgd(0.1)}, {"**": "a"}, labels_are_tree="yes")


def test_a_foreign_state_is_rejected():
    params = {"w": jnp.ones(2)}
    tx = partition({"a": optix.sgd(0.1)}, {"**": "a"})
    with pytest.raises(ValueError, match="PartitionState"):
        tx.update(params, optix.sgd(0.1).init(params), params)


# ---- real ecosystem trees -----------------------------------------------------------------------


def _check_bias_partition(params, grads_fn, bias_paths):
    """partition by "**/bias" on ``params``: biases get sgd(1.0), the rest adamw; compare leaf by
    leaf with each optimizer run alone on the list of its own leaves (one jitted reference each)."""
    tx = partition(
        {"bias": optix.sgd(1.0), "rest": optix.adamw(1e-2, weight_decay=0.1)},
        {"**/bias": "bias", "**": "rest"},
    )
    step, state = jax.jit(tx.update), tx.init(params)
    paths = _paths.leaf_paths(params)
    groups = {
        "bias": [p in bias_paths for p in paths],
        "rest": [p not in bias_paths for p in paths],
    }

    def pick(tree, label):
        return [x for x, k in zip(jax.tree.leaves(tree), groups[label], strict=True) if k]

    refs = {"bias": optix.sgd(1.0), "rest": optix.adamw(1e-2, weight_decay=0.1)}
    ref_states = {label: ref.init(pick(params, label)) for label, ref in refs.items()}
    ref_steps = {label: jax.jit(ref.update) for label, ref in refs.items()}
    for i in range(2):
        grads = grads_fn(params, i)
        assert jax.tree.structure(grads) == jax.tree.structure(params)
        updates, state = step(grads, state, params)
        for label in refs:
            expected, ref_states[label] = ref_steps[label](
                pick(grads, label), ref_states[label], pick(params, label)
            )
            for u, e in zip(pick(updates, label), expected, strict=True):
                np.testing.assert_allclose(u, e, rtol=1e-6, atol=1e-9, err_msg=label)
        params = optix.apply_updates(params, updates)
    return params


def test_flax_linen_params():
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.LayerNorm()(nn.relu(nn.Dense(4)(x)))
            return nn.Dense(1)(x)

    model = MLP()
    x = jnp.ones((2, 3))
    params = model.init(jax.random.key(0), x)["params"]
    assert _paths.leaf_paths(params) == [
        "Dense_0/bias",
        "Dense_0/kernel",
        "Dense_1/bias",
        "Dense_1/kernel",
        "LayerNorm_0/bias",
        "LayerNorm_0/scale",
    ]

    @jax.jit
    def grads_fn(p, i):
        return jax.grad(lambda q: jnp.sum(model.apply({"params": q}, x * (i + 1)) ** 2))(p)

    bias = {"Dense_0/bias", "Dense_1/bias", "LayerNorm_0/bias"}
    _check_bias_partition(params, grads_fn, bias)


def _nnx_model():
    class Stack(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

        def __call__(self, x):
            return self.layers[1](jax.nn.relu(self.layers[0](x)))

    return Stack(nnx.Rngs(0))


def test_flax_nnx_state():
    model = _nnx_model()
    graphdef, params = nnx.split(model, nnx.Param)
    assert isinstance(params, nnx.State)
    # nnx.State's leaves sit inside Param variables, whose "value" segment paths leave out: the
    # paths are those of the bare arrays that nnx.Optimizer's update passes.
    assert _paths.leaf_paths(params) == [
        "layers/0/bias",
        "layers/0/kernel",
        "layers/1/bias",
        "layers/1/kernel",
    ]
    assert _paths.leaf_paths(nnx.as_pure(params)) == _paths.leaf_paths(params)
    x = jnp.ones((2, 3))

    @jax.jit
    def grads_fn(p, i):
        return jax.grad(lambda q: jnp.sum(nnx.merge(graphdef, q)(x * (i + 1)) ** 2))(p)

    bias = {"layers/0/bias", "layers/1/bias"}
    new = _check_bias_partition(params, grads_fn, bias)
    assert isinstance(new, nnx.State)
    # A label tree mapped over the State (strings inside Param nodes) works as well.
    labels = jax.tree.map(lambda v: "w" if v.ndim > 1 else "b", params)
    tx = partition({"w": optix.sgd(0.1), "b": optix.sgd(1.0)}, labels)
    updates, _ = tx.update(grads_fn(params, 0), tx.init(params), params)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads_fn(params, 0)), strict=True):
        np.testing.assert_allclose(u, -(0.1 if g.ndim > 1 else 1.0) * g, rtol=1e-6)


def test_equinox_filtered_model():
    model = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)
    x = jnp.ones(3)

    @jax.jit
    def grads_fn(p, i):
        return jax.grad(lambda q: jnp.sum(eqx.combine(q, static)(x * (i + 1)) ** 2))(p)

    assert _paths.leaf_paths(params)[:2] == ["layers/0/weight", "layers/0/bias"]
    bias = {f"layers/{i}/bias" for i in range(3)}
    _check_bias_partition(params, grads_fn, bias)
    # An equinox module of labels (a callable pytree) is a label tree, never called.
    labels = jax.tree.map(lambda v: "w" if v.ndim > 1 else "b", params)
    assert callable(labels)
    tx = partition({"w": optix.sgd(0.1), "b": optix.sgd(1.0)}, labels)
    g = grads_fn(params, 0)
    updates, _ = tx.update(g, tx.init(params), params)
    for u, gl in zip(jax.tree.leaves(updates), jax.tree.leaves(g), strict=True):
        np.testing.assert_allclose(u, -(0.1 if gl.ndim > 1 else 1.0) * gl, rtol=1e-6)
