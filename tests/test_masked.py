"""masked and freeze: the inner transform sees only the selected leaves; the rest pass or stop."""

from __future__ import annotations

import dataclasses

import chex
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import optix
from optix import _paths
from optix.wrappers._masked import MaskedState
from optix.wrappers._masked import freeze
from optix.wrappers._masked import masked


def _params(seed: int = 0):
    rng = np.random.default_rng(seed)

    def a(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {
        "encoder": {"dense": {"kernel": a(3, 4), "bias": a(4)}, "norm": {"scale": a(4)}},
        "head": {"kernel": a(4, 2), "bias": a(2)},
    }


def _grads(params, seed: int):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(5 * rng.normal(size=p.shape), p.dtype), params)


# Kernels only. Every form below describes this same mask.
KERNELS = {
    "encoder": {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False}},
    "head": {"kernel": True, "bias": False},
}
MASK_FORMS = {
    "tree": KERNELS,
    "function": lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
    "pattern_dict": {"**/kernel": True, "**": False},
    "pattern_list": ["**/kernel"],
}


def _prune(tree, keep):
    """A plain dict with only the leaves where ``keep`` is True (the standalone reference)."""
    if isinstance(tree, dict):
        out = {k: _prune(tree[k], keep[k]) for k in tree}
        return {
            k: v for k, v in out.items() if v is not None and not (isinstance(v, dict) and not v)
        }
    return tree if keep else None


def _inner():
    # The global norm makes the inner result depend on which leaves it sees.
    return optix.chain(optix.clip_by_global_norm(1.0), optix.adam(1e-2))


def _nbytes(tree) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(tree))


def _jit_steps(tx, params, steps):
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state, updates

    state, history = tx.init(params), []
    for i in range(steps):
        params, state, updates = step(params, state, _grads(params, 10 + i))
        history.append(updates)
    return history, state


def _reference(tx, params, keep, steps):
    """``tx`` run alone on the leaves where ``keep`` is True, fed the same gradients."""
    sub = _prune(params, keep)
    state, history = tx.init(sub), []
    for i in range(steps):
        updates, state = tx.update(_prune(_grads(params, 10 + i), keep), state, sub)
        sub = optix.apply_updates(sub, updates)
        history.append(updates)
    return history


def _close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


def test_masked_in_leaves_equal_inner_alone_and_the_rest_pass_through_exactly():
    params, steps = _params(), 3
    history, _ = _jit_steps(masked(_inner(), KERNELS), params, steps)
    expected = _reference(_inner(), params, KERNELS, steps)
    for i in range(steps):
        _close(_prune(history[i], KERNELS), expected[i])
        not_kernels = jax.tree.map(lambda k: not k, KERNELS)
        grads = _grads(params, 10 + i)
        for got, g in zip(
            jax.tree.leaves(_prune(history[i], not_kernels)),
            jax.tree.leaves(_prune(grads, not_kernels)),
            strict=True,
        ):
            np.testing.assert_array_equal(got, g)


@pytest.mark.parametrize("form", sorted(MASK_FORMS))
def test_every_mask_form_gives_the_same_result(form):
    params = _params()
    expected, _ = _jit_steps(masked(_inner(), KERNELS), params, 2)
    got, _ = _jit_steps(masked(_inner(), MASK_FORMS[form]), params, 2)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_holds_buffers_for_masked_in_leaves_only():
    params = _params()
    state = masked(optix.adam(1e-2), KERNELS).init(params)
    assert isinstance(state, MaskedState)
    alone = optix.adam(1e-2).init(_prune(params, KERNELS))
    full = optix.adam(1e-2).init(params)
    assert len(jax.tree.leaves(state)) == len(jax.tree.leaves(alone))
    assert _nbytes(state) == _nbytes(alone) < _nbytes(full)
    slots = jax.tree.leaves(state.inner_state[0].mu, is_leaf=lambda x: x is None)
    present = [p for p, x in zip(_paths.leaf_paths(params), slots, strict=True) if x is not None]
    assert present == ["encoder/dense/kernel", "head/kernel"]


def test_nested_masks_compose():
    """masked(masked(inner, m2), m1) applies inner where m1 and m2; both masks are written for
    the full params (the inner one also works as a pattern dict)."""
    params, steps = _params(), 2
    encoder = {"encoder": True, "head": False}
    m1 = {"encoder/**": True, "**": False}
    both = {
        "encoder": {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False}},
        "head": {"kernel": False, "bias": False},
    }
    expected = _reference(_inner(), params, both, steps)
    for m2 in [KERNELS, {"**/kernel": True, "**": False}]:
        for outer in [
            m1,
            jax.tree.map(lambda e, sub: jax.tree.map(lambda _: e, sub), encoder, params),
        ]:
            history, _ = _jit_steps(masked(masked(_inner(), m2), outer), params, steps)
            for i in range(steps):
                _close(_prune(history[i], both), expected[i])
                grads = _grads(params, 10 + i)
                np.testing.assert_array_equal(history[i]["head"]["kernel"], grads["head"]["kernel"])
                np.testing.assert_array_equal(
                    history[i]["encoder"]["dense"]["bias"], grads["encoder"]["dense"]["bias"]
                )


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class CallableMask:
    """A callable pytree (like an equinox module): used as a mask it is a tree, not a function."""

    w: bool
    b: bool

    def __call__(self, x):
        raise AssertionError("a callable pytree mask must not be called")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Params:
    w: jax.Array
    b: jax.Array


def test_callable_pytree_mask_is_a_tree():
    params = Params(jnp.ones(3), jnp.ones(2))
    grads = Params(jnp.full(3, 2.0), jnp.full(2, 3.0))
    for kwargs in [{}, {"mask_is_tree": True}]:
        tx = masked(optix.sgd(0.5), CallableMask(w=True, b=False), **kwargs)
        updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        np.testing.assert_array_equal(updates.w, -0.5 * grads.w)
        np.testing.assert_array_equal(updates.b, grads.b)
    # mask_is_tree=False forces a call
    calls = []

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class MaskMaker:
        scale: jax.Array

        def __call__(self, tree):
            calls.append(1)
            return Params(w=False, b=True)

    tx = masked(optix.sgd(0.5), MaskMaker(jnp.ones([])), mask_is_tree=False)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert calls
    np.testing.assert_array_equal(updates.w, grads.w)
    np.testing.assert_array_equal(updates.b, -0.5 * grads.b)


def test_masked_is_jit_stable_and_abstract_init_works():
    params = _params()
    tx = masked(_inner(), {"**/kernel": True, "**": False})
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    state = tx.init(params)
    sig = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])  # noqa: E731
    assert sig(jax.eval_shape(tx.init, shapes)) == sig(state)
    grads = jax.tree.map(lambda g: jnp.stack([g, -g]), _grads(params, 0))
    scanned, _ = jax.lax.scan(lambda s, g: (tx.update(g, s, params)[1], None), state, grads)
    assert sig(scanned) == sig(state)
    cond = jax.lax.cond(True, lambda s: tx.update(_grads(params, 1), s)[1], lambda s: s, state)
    assert sig(cond) == sig(state)


def test_low_precision_updates_keep_their_dtype():
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
    tx = masked(optix.adam(1e-2), KERNELS)
    updates, _ = jax.jit(tx.update)(_grads(params, 0), tx.init(params), params)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


def test_hyperparams_reachable_through_the_mask():
    tx = masked(optix.adam(1e-2), KERNELS)
    state = optix.set_hyperparams(tx.init(_params()), learning_rate=1e-4)
    assert list(optix.get_hyperparams(state))[-1] == "learning_rate"
    np.testing.assert_allclose(optix.get_hyperparams(state)["learning_rate"], 1e-4, rtol=1e-7)


def test_extra_keyword_arguments_are_forwarded():
    seen = []

    def record(updates, state, params=None, **extra):
        seen.append(extra)
        return updates, state

    tx = masked(optix.GradientTransformation(lambda p: (), record), {"**": True})
    params = {"w": jnp.ones(2)}
    tx.update(params, tx.init(params), params, value=jnp.ones([]))
    assert len(seen) == 1 and set(seen[0]) == {"value"}


# ---- freeze -------------------------------------------------------------------------------------


FROZEN_FORMS = {
    "list": ["encoder/**"],
    "str": "encoder",
    "dict_without_catch_all": {"encoder/**": True},
    "tree": {
        "encoder": {"dense": {"kernel": True, "bias": True}, "norm": {"scale": True}},
        "head": {"kernel": False, "bias": False},
    },
    "function": lambda p: {
        "encoder": jax.tree.map(lambda _: True, p["encoder"]),
        "head": jax.tree.map(lambda _: False, p["head"]),
    },
}
TRAINABLE = {
    "encoder": {"dense": {"kernel": False, "bias": False}, "norm": {"scale": False}},
    "head": {"kernel": True, "bias": True},
}


@pytest.mark.parametrize("form", sorted(FROZEN_FORMS))
def test_freeze_gives_exact_zeros_and_inner_elsewhere(form):
    params, steps = _params(), 3

    def inner():
        return optix.adamw(1e-2, weight_decay=0.5)

    history, state = _jit_steps(freeze(FROZEN_FORMS[form], inner()), params, steps)
    expected = _reference(inner(), params, TRAINABLE, steps)
    for i in range(steps):
        for leaf in jax.tree.leaves(history[i]["encoder"]):
            assert leaf.dtype == jnp.float32
            np.testing.assert_array_equal(leaf, np.zeros(leaf.shape, np.float32))
        _close(_prune(history[i], TRAINABLE), expected[i])
    # No moment buffers for the frozen leaves: the state is adamw's on the head alone.
    alone = inner().init(_prune(params, TRAINABLE))
    assert len(jax.tree.leaves(state)) == len(jax.tree.leaves(alone))
    assert _nbytes(state) == _nbytes(alone) < _nbytes(inner().init(params))


def test_freeze_inside_beats_chaining_it_before_adamw():
    """The documented pitfall: chain(freeze(mask), adamw) still decays frozen params."""
    params = _params()
    grads = _grads(params, 0)
    good = freeze(["encoder"], optix.adamw(1e-2, weight_decay=0.5))
    bad = optix.chain(freeze(["encoder"]), optix.adamw(1e-2, weight_decay=0.5))
    u_good, _ = good.update(grads, good.init(params), params)
    u_bad, s_bad = bad.update(grads, bad.init(params), params)
    moved = optix.apply_updates(params, u_bad)["encoder"]["dense"]["kernel"]
    kept = optix.apply_updates(params, u_good)["encoder"]["dense"]["kernel"]
    np.testing.assert_array_equal(kept, params["encoder"]["dense"]["kernel"])
    assert not np.allclose(moved, params["encoder"]["dense"]["kernel"])
    assert _nbytes(s_bad) > _nbytes(good.init(params))


def test_freeze_without_inner_is_identity_on_the_rest():
    params = _params()
    grads = _grads(params, 0)
    tx = freeze("**/bias")
    updates, _ = tx.update(grads, tx.init(params))
    np.testing.assert_array_equal(updates["head"]["bias"], np.zeros(2, np.float32))
    np.testing.assert_array_equal(updates["head"]["kernel"], grads["head"]["kernel"])


def test_freeze_zeros_even_non_finite_gradients():
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    grads = {"a": jnp.array([jnp.nan, jnp.inf]), "b": jnp.ones(2)}
    tx = freeze(["a"], optix.sgd(0.1))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["a"], np.zeros(2, np.float32))


# ---- errors -------------------------------------------------------------------------------------


def test_non_bool_mask_value_names_the_path():
    tx = masked(optix.sgd(0.1), {"w": True, "b": jnp.ones(2) > 0})
    with pytest.raises(TypeError, match="'b'"):
        tx.init({"w": jnp.ones(2), "b": jnp.ones(2)})


def test_unmatched_pattern_names_the_path():
    tx = masked(optix.sgd(0.1), {"**/kernel": True})
    with pytest.raises(ValueError, match="encoder/dense/bias"):
        tx.init(_params())


def test_wrong_structure_mask_names_the_path():
    mask = jax.tree.map(lambda x: x, KERNELS)
    del mask["head"]["bias"]
    tx = masked(optix.sgd(0.1), mask)
    with pytest.raises(ValueError, match="head/bias"):
        tx.init(_params())


def test_bad_arguments_and_foreign_state():
    with pytest.raises(TypeError, match="inner"):
        masked(optix.sgd, KERNELS)
    with pytest.raises(TypeError, match="mask"):
        masked(optix.sgd(0.1), None)
    with pytest.raises(TypeError, match="mask_is_tree"):
        masked(optix.sgd(0.1), KERNELS, mask_is_tree=1)
    with pytest.raises(TypeError, match="inner"):
        freeze(["a"], optix.adam)
    params = _params()
    with pytest.raises(ValueError, match="MaskedState"):
        masked(optix.sgd(0.1), KERNELS).update(params, optix.sgd(0.1).init(params), params)


# ---- real ecosystem trees -----------------------------------------------------------------------


def _check_mask(params, grads_fn, mask, kernel_paths):
    """masked(adam) on the kernels and freeze(kernels, sgd) on the rest, checked leaf by leaf
    against adam alone on the list of kernels (one jitted reference) and against -grad."""
    tx = masked(optix.adam(1e-2), mask)
    frozen = freeze(mask, optix.sgd(1.0))
    step, step_frozen = jax.jit(tx.update), jax.jit(frozen.update)
    state, state_frozen = tx.init(params), frozen.init(params)
    paths = _paths.leaf_paths(params)
    is_kernel = [path in kernel_paths for path in paths]

    def kernels(tree):
        return [x for x, k in zip(jax.tree.leaves(tree), is_kernel, strict=True) if k]

    ref = optix.adam(1e-2)
    ref_step, ref_state = jax.jit(ref.update), ref.init(kernels(params))
    for i in range(2):
        grads = grads_fn(params, i)
        updates, state = step(grads, state, params)
        u_frozen, state_frozen = step_frozen(grads, state_frozen, params)
        expected, ref_state = ref_step(kernels(grads), ref_state, kernels(params))
        expected = iter(expected)
        for path, g, u, uf, k in zip(
            paths,
            jax.tree.leaves(grads),
            jax.tree.leaves(updates),
            jax.tree.leaves(u_frozen),
            is_kernel,
            strict=True,
        ):
            if k:
                np.testing.assert_allclose(u, next(expected), rtol=1e-6, atol=1e-9, err_msg=path)
                np.testing.assert_array_equal(uf, np.zeros(uf.shape, uf.dtype))
            else:
                np.testing.assert_array_equal(u, g)
                np.testing.assert_allclose(uf, -g, rtol=1e-7)
        params = optix.apply_updates(params, updates)
    moments = jax.tree.leaves(state.inner_state[0].mu)
    assert len(moments) == len(kernel_paths)
    return params


def test_flax_linen_params():
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.LayerNorm()(nn.relu(nn.Dense(4)(x))))

    model, x = MLP(), jnp.ones((2, 3))
    params = model.init(jax.random.key(0), x)["params"]

    @jax.jit
    def grads_fn(p, i):
        return jax.grad(lambda q: jnp.sum(model.apply({"params": q}, x * (i + 1)) ** 2))(p)

    kernels = {"Dense_0/kernel", "Dense_1/kernel"}
    _check_mask(params, grads_fn, {"**/kernel": True, "**": False}, kernels)
    _check_mask(params, grads_fn, jax.tree.map(lambda v: v.ndim > 1, params), kernels)


def test_flax_nnx_state():
    class Stack(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

        def __call__(self, x):
            return self.layers[1](jax.nn.relu(self.layers[0](x)))

    graphdef, params = nnx.split(Stack(nnx.Rngs(0)), nnx.Param)
    x = jnp.ones((2, 3))

    @jax.jit
    def grads_fn(p, i):
        return jax.grad(lambda q: jnp.sum(nnx.merge(graphdef, q)(x * (i + 1)) ** 2))(p)

    kernels = {"layers/0/kernel", "layers/1/kernel"}
    new = _check_mask(params, grads_fn, ["**/kernel"], kernels)
    assert isinstance(new, nnx.State)
    # A bool tree mapped over the State keeps its Param nodes and works as a mask tree.
    _check_mask(params, grads_fn, jax.tree.map(lambda v: v.ndim > 1, params), kernels)


def test_equinox_module_as_mask_tree():
    model = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)
    x = jnp.ones(3)

    @jax.jit
    def grads_fn(p, i):
        return jax.grad(lambda q: jnp.sum(eqx.combine(q, static)(x * (i + 1)) ** 2))(p)

    mask = jax.tree.map(lambda v: v.ndim > 1, params)  # an eqx.nn.MLP of bools: callable
    assert isinstance(mask, eqx.nn.MLP) and callable(mask)
    kernels = {f"layers/{i}/weight" for i in range(3)}
    _check_mask(params, grads_fn, mask, kernels)
    _check_mask(params, grads_fn, {"**/weight": True, "**": False}, kernels)
