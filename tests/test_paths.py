"""Mask and label specs (optix._paths): patterns, prefix trees, nnx paths, packed params, and
optax's tree_map_params on every state."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optix
from optix import _paths
from tests.cases import CASES
from tests.cases import IDS
from tests.reference import run_teacher_forced


def _params():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=4), jnp.float32),
    }


# ---- 1. a pattern that takes no leaf is an error, wherever a mask or labels are taken ----------


def _mask_takers():
    """Every public factory with a mask or labels argument, as ``(name, argument)``."""
    out = []
    for name in optix.__all__:
        fn = getattr(optix, name)
        if not inspect.isfunction(fn):
            continue
        for arg in inspect.signature(fn).parameters:
            if arg.endswith("mask") or arg == "labels":
                out.append((name, arg))
    return out


MASK_TAKERS = _mask_takers()


def _build(name: str, arg: str, spec):
    fn = getattr(optix, name)
    if name == "masked":
        return fn(optix.sgd(0.1), spec)
    if name == "freeze":
        return fn(spec, optix.sgd(0.1))
    if name == "partition":
        return fn({"a": optix.sgd(0.1), "b": optix.adam(0.1)}, spec)
    params = inspect.signature(fn).parameters
    kwargs = {arg: spec}
    if "learning_rate" in params and params["learning_rate"].default is inspect.Parameter.empty:
        kwargs["learning_rate"] = 1e-2
    for decay in ("weight_decay", "weight_decay_rate"):
        if decay in params:
            kwargs[decay] = 0.1
    return fn(**kwargs)


def _typo_spec(name: str, arg: str):
    """A spec whose first pattern names ``bias``, a leaf these params call ``b``."""
    if name == "partition":
        return {"**/bias": "b", "**": "a"}
    if arg == "labels":  # muon: muon or adam
        return {"**/bias": "adam"}
    if name == "freeze":
        return ["**/bias"]
    return {"**/bias": False, "**": True}


def test_every_mask_taker_is_found():
    names = {name for name, _ in MASK_TAKERS}
    assert {"adamw", "masked", "freeze", "partition", "muon", "lars", "adafactor"} <= names


@pytest.mark.parametrize(("name", "arg"), MASK_TAKERS, ids=[f"{n}-{a}" for n, a in MASK_TAKERS])
def test_a_pattern_that_matches_no_leaf_is_named(name, arg):
    params = _params()
    tx = _build(name, arg, _typo_spec(name, arg))
    with pytest.raises(ValueError, match=r"'\*\*/bias' matches no leaf"):
        state = tx.init(params)
        tx.update(jax.tree.map(jnp.ones_like, params), state, params)


def test_adamw_with_a_typo_no_longer_decays_the_bias_silently():
    tx = optix.adamw(1e-3, weight_decay=0.1, mask={"**/bias": False, "**": True})
    with pytest.raises(ValueError, match=r"`add_decayed_weights` mask: the pattern '\*\*/bias'"):
        tx.init(_params())
    # Spelled right, it decays w only.
    tx = optix.adamw(1e-3, weight_decay=0.1, mask={"**/b": False, "**": True})
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_array_equal(updates["b"], np.zeros(4, np.float32))
    assert bool(jnp.all(updates["w"] != 0))


def test_a_shadowed_pattern_is_named():
    tx = optix.masked(optix.sgd(0.1), {"**": True, "**/b": False})
    with pytest.raises(ValueError, match=r"'\*\*/b' takes no leaf.*earlier pattern"):
        tx.init(_params())
    tx = optix.partition({"x": optix.sgd(0.1), "y": optix.sgd(1.0)}, {"*": "x", "w": "y"})
    with pytest.raises(ValueError, match="'w' takes no leaf"):
        tx.init(_params())


def test_a_trailing_catch_all_may_take_nothing():
    """``"**"`` last is the fallback: a recipe written for any model works on one whose leaves
    the earlier patterns take entirely. A ``"**"`` anywhere else must take a leaf."""
    params = _params()
    for spec in [{"w": True, "b*": False, "**": False}, {"[wb]": True, "**": False}]:
        tx = optix.masked(optix.sgd(1.0), spec)
        tx.update(params, tx.init(params), params)
    tx = optix.masked(optix.sgd(1.0), {"**": True, "b*": False, "w": True})
    with pytest.raises(ValueError, match="'b\\*' takes no leaf"):
        tx.init(params)


def test_a_pattern_list_and_freeze_defaults_still_need_each_pattern_to_match():
    params = _params()
    optix.freeze(["w", "b"], optix.sgd(0.1)).init(params)  # the implicit "**": False is unused
    with pytest.raises(ValueError, match="'kernel' matches no leaf"):
        optix.freeze(["w", "kernel"], optix.sgd(0.1)).init(params)
    with pytest.raises(ValueError, match="'encoder/\\*\\*' matches no leaf"):
        optix.masked(optix.sgd(0.1), ["encoder/**"]).init(params)


def test_patterns_inside_a_masked_view_see_the_full_paths():
    """A pattern written for the full params matches leaves masked out by an outer wrapper: it
    is not reported as matching nothing, and it takes none of the view's leaves."""
    params = {"enc": _params(), "head": _params()}
    inner = optix.partition(
        {"enc": optix.sgd(0.1), "head": optix.sgd(1.0)}, {"enc/**": "enc", "head/**": "head"}
    )
    tx = optix.masked(
        optix.masked(inner, {"enc/w": False, "**": True}), {"head/b": False, "**": True}
    )
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["enc"]["b"], -0.1 * np.ones(4), rtol=1e-6)
    np.testing.assert_array_equal(updates["enc"]["w"], np.ones((3, 4)))
    np.testing.assert_array_equal(updates["head"]["b"], np.ones(4))


# ---- 2. which spec is a tree and which is patterns ----------------------------------------------


PREFIX_PARAMS = {
    "encoder": {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "scale": jnp.ones(3)},
    "decoder": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)},
}


def test_a_value_at_a_subtree_applies_to_every_leaf_below_it():
    prefix = {"encoder": False, "decoder": {"w": True, "b": False}}
    full = {
        "encoder": {"dense": {"kernel": False, "bias": False}, "scale": False},
        "decoder": {"w": True, "b": False},
    }
    assert _paths.resolve(prefix, PREFIX_PARAMS, "mask") == full
    labels = {"encoder": "slow", "decoder": "fast"}
    assert jax.tree.leaves(_paths.resolve(labels, PREFIX_PARAMS, "labels")) == [
        "fast",
        "fast",
        "slow",
        "slow",
        "slow",
    ]
    # the root itself can carry the value
    assert jax.tree.leaves(_paths.resolve(True, PREFIX_PARAMS, "mask")) == [True] * 5


def test_spec_reading_rules():
    # no '*', '?', '[' or '/' in any key: a tree, so a partial dict is a structure error (with a
    # hint to write patterns) instead of patterns that leave leaves unmatched
    with pytest.raises(ValueError, match="'decoder' is in params but not in mask.*'\\*\\*'"):
        _paths.resolve({"encoder": False}, PREFIX_PARAMS, "mask")
    with pytest.raises(ValueError, match="'encoderr' is in mask but not in params"):
        _paths.resolve({"encoderr": False, "decoder": True}, PREFIX_PARAMS, "mask")
    # one key with a pattern character makes every key a pattern (a plain key matches a path)
    got = _paths.resolve({"encoder": False, "**": True}, PREFIX_PARAMS, "mask")
    assert got["decoder"] == {"w": True, "b": True}
    assert jax.tree.leaves(got["encoder"]) == [False, False, False]
    # a nested dict is a tree whatever its keys
    with pytest.raises(ValueError, match="'decoder/b' is in params"):
        _paths.resolve({"encoder": False, "decoder": {"w*": True}}, PREFIX_PARAMS, "mask")
    # a tree whose leaf sits where the params have a subtree, or the reverse
    with pytest.raises(ValueError, match="at 'decoder/w' the params hold a leaf"):
        _paths.resolve(
            {"encoder": False, "decoder": {"w": {"x": True}, "b": True}}, PREFIX_PARAMS, "mask"
        )


def test_a_dict_that_reads_both_ways_must_agree():
    """haiku-style keys hold '/': read as patterns or as a tree they usually agree (accepted);
    when a key's wildcard makes the readings differ, it is an error, and the tree flag settles
    it."""
    haiku = {"mlp/~/linear_0": {"w": jnp.ones((2, 2))}, "mlp/~/linear_1": {"w": jnp.ones(2)}}
    mask = {"mlp/~/linear_0": False, "mlp/~/linear_1": True}
    assert _paths.resolve(mask, haiku, "mask") == {
        "mlp/~/linear_0": {"w": False},
        "mlp/~/linear_1": {"w": True},
    }
    # a pattern over haiku paths: keys holding '/' count as several segments
    assert jax.tree.leaves(_paths.resolve({"mlp/~/*_1/**": True, "**": False}, haiku, "m")) == [
        False,
        True,
    ]
    starred = {"a*": {"w": jnp.ones(2)}, "ab": {"w": jnp.ones(2)}}
    ambiguous = {"a*": True, "ab": False}
    with pytest.raises(ValueError, match="ambiguous.*'ab/w'"):
        _paths.resolve(ambiguous, starred, "mask")
    tx = optix.masked(optix.sgd(1.0), ambiguous, mask_is_tree=True)
    updates, _ = tx.update(starred, tx.init(starred), starred)
    np.testing.assert_array_equal(updates["a*"]["w"], -np.ones(2))
    np.testing.assert_array_equal(updates["ab"]["w"], np.ones(2))


def test_freeze_and_muon_accept_a_partial_tree_because_they_have_a_default():
    tx = optix.freeze({"encoder": True}, optix.sgd(1.0))
    grads = jax.tree.map(jnp.ones_like, PREFIX_PARAMS)
    updates, _ = tx.update(grads, tx.init(PREFIX_PARAMS), PREFIX_PARAMS)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates["encoder"]))
    assert all(bool(jnp.all(u == -1)) for u in jax.tree.leaves(updates["decoder"]))
    with pytest.raises(ValueError, match="'encoderr' is in `freeze` mask but not in params"):
        optix.freeze({"encoderr": True}, optix.sgd(1.0)).init(PREFIX_PARAMS)


def _nested(tx):
    """``tx`` run on the reference stream's flat tree regrouped as ``{"enc": {scalar, vector},
    "dec": {matrix}}``, so that prefix specs have subtrees to cover."""

    def nest(t):
        if t is None:
            return None
        return {
            "enc": {"scalar": t["scalar"], "vector": t["vector"]},
            "dec": {"matrix": t["matrix"]},
        }

    def flat(t):
        return {
            "scalar": t["enc"]["scalar"],
            "vector": t["enc"]["vector"],
            "matrix": t["dec"]["matrix"],
        }

    def update(updates, state, params=None):
        new, state = tx.update(nest(updates), state, nest(params))
        return flat(new), state

    return optax.GradientTransformation(lambda p: tx.init(nest(p)), update)


PREFIX_MASKS = [
    {"enc": True, "dec": False},
    {"enc": {"scalar": False, "vector": True}, "dec": True},
    {"enc": False, "dec": {"matrix": True}},
]


@pytest.mark.parametrize("mask", PREFIX_MASKS, ids=["top", "mixed", "deep"])
def test_masked_with_a_prefix_mask_matches_optax_masked_step_by_step(x64, mask):
    ours = _nested(optix.masked(optix.adam(1e-2), mask))
    theirs = _nested(optax.masked(optax.adam(1e-2), mask))
    run_teacher_forced(ours, theirs, f"masked {mask}")


@pytest.mark.parametrize(
    "labels",
    [{"enc": "a", "dec": "b"}, {"enc": {"scalar": "b", "vector": "a"}, "dec": "a"}],
    ids=["top", "mixed"],
)
def test_partition_with_a_prefix_label_tree_matches_optax_multi_transform(x64, labels):
    ours = _nested(
        optix.partition({"a": optix.adamw(1e-2, weight_decay=0.1), "b": optix.adam(3e-2)}, labels)
    )
    theirs = _nested(
        optax.multi_transform(
            {"a": optax.adamw(1e-2, weight_decay=0.1), "b": optax.adam(3e-2)}, labels
        )
    )
    run_teacher_forced(ours, theirs, f"partition {labels}")


# ---- 3. optax.tree_utils.tree_map_params -------------------------------------------------------


def _specs(params):
    return jax.tree.map(lambda x: f"spec{x.ndim}", params)


def _check_map_params(tx, params):
    """Every params-shaped tree in the state becomes the specs tree (optax's sharding recipe);
    everything else becomes "other". Masked-out slots (``None``) stay ``None``."""
    state = tx.init(params)
    mapped = optax.tree_utils.tree_map_params(
        tx,
        lambda p, spec: None if p is None else spec,
        state,
        _specs(params),
        transform_non_params=lambda _: "other",
        is_leaf=lambda x: x is None,
    )
    leaves = jax.tree.leaves(mapped)
    assert set(leaves) <= {"spec1", "spec2", "other"}
    n_params_like = sum(1 for x in leaves if x in ("spec1", "spec2"))
    return mapped, n_params_like


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tree_map_params_on_every_optimizer(case):
    """optax finds every params-shaped part of the state (init on its placeholder works), and the
    tagged tree has the state's structure, so it can serve as a tree of shardings."""
    tx, params = case.make(), _params()
    state = tx.init(params)
    tagged = optax.tree_utils.tree_map_params(
        tx, lambda _: "param", state, transform_non_params=lambda _: "other"
    )
    assert jax.tree.structure(tagged) == jax.tree.structure(jax.tree.map(lambda _: "x", state))
    assert set(jax.tree.leaves(tagged)) <= {"param", "other"}
    moments = [
        getattr(part, name)
        for part in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "_fields"))
        for name in ("mu", "nu")
        if hasattr(part, name)
        and jax.tree.structure(getattr(part, name)) == jax.tree.structure(params)
    ]
    n_param = jax.tree.leaves(tagged).count("param")
    assert n_param >= sum(len(jax.tree.leaves(m)) for m in moments)


def test_tree_map_params_on_masked_and_partition_states():
    params = _params()
    mapped, n = _check_map_params(optix.masked(optix.adam(0.1), {"w": True, "b": False}), params)
    assert mapped.inner_state[0].mu == {"w": "spec2", "b": None} and n == 2
    for mask in [{"**/w": True, "**": False}, ["w"], lambda p: {"w": True, "b": False}]:
        assert _check_map_params(optix.masked(optix.adam(0.1), mask), params)[1] == 2
        assert _check_map_params(optix.freeze(mask, optix.adam(0.1)), params)[1] == 2
    tx = optix.partition(
        {"a": optix.adam(0.1), "b": optix.sgd(0.1, momentum=0.9)}, {"w": "a", "b": "b"}
    )
    mapped, n = _check_map_params(tx, params)
    assert mapped.inner_states["a"][0].nu == {"w": "spec2", "b": None}
    assert (
        jax.tree.leaves(mapped.inner_states["b"], is_leaf=lambda x: x is None).count("spec1") == 1
    )
    assert n == 3
    tx = optix.adamw(0.1, mask={"encoder": False, "decoder": {"w": True, "b": False}})
    _check_map_params(tx, PREFIX_PARAMS)


# ---- 4. nnx: the same paths at init and update ------------------------------------------------


class _Attention(nnx.Module):
    def __init__(self, rngs):
        self.query = nnx.Linear(3, 3, rngs=rngs)
        self.key = nnx.Linear(3, 3, rngs=rngs)
        self.value = nnx.Linear(3, 3, rngs=rngs)

    def __call__(self, x):
        return self.query(x) * self.key(x) + self.value(x)


def _nnx_step(tx, loss_scale):
    model = _Attention(nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: loss_scale * jnp.sum(m(jnp.ones((2, 3)))))(model)
        optimizer.update(model, grads)

    step(model, optimizer)
    step(model, optimizer)
    return before, nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_nnx_paths_drop_the_variable_value_segment():
    model = _Attention(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    assert _paths.leaf_paths(state) == _paths.leaf_paths(nnx.as_pure(state))
    assert "value/kernel" in _paths.leaf_paths(state)


def test_nnx_optimizer_mask_naming_a_module_called_value_affects_it_only():
    # adamw's decay alone (zero gradients): only the value projection is left undecayed
    tx = optix.adamw(0.1, weight_decay=0.5, mask={"**/value": False, "**": True})
    before, after = _nnx_step(tx, 0.0)
    for module in ("query", "key", "value"):
        for leaf in ("kernel", "bias"):
            b, a = before[module][leaf], after[module][leaf]
            expected = b if module == "value" else b * (1 - 0.05) ** 2
            np.testing.assert_allclose(a, expected, rtol=1e-6, err_msg=f"{module}/{leaf}")
    # adam on the value projection only, the rest frozen: the state is built at init (Variable
    # leaves) and used at update (bare arrays), so both must select the same leaves
    tx = optix.freeze({"**/value": False, "**": True}, optix.adam(0.1))
    before, after = _nnx_step(tx, 1.0)
    for module in ("query", "key", "value"):
        for leaf in ("kernel", "bias"):
            moved = not np.array_equal(before[module][leaf], after[module][leaf])
            assert moved == (module == "value"), f"{module}/{leaf}"


def test_leaf_paths_skip_none_and_join_with_slashes():
    from optix._paths import leaf_paths

    assert leaf_paths({"encoder": [jnp.ones(2), None], "head": jnp.ones(1)}) == [
        "encoder/0",
        "head",
    ]


def test_matches_prefixes_and_double_star():
    from optix._paths import matches

    assert matches("**/bias", "encoder/0/bias") and matches("encoder", "encoder/0/bias")
    assert not matches("*/bias", "encoder/0/bias")
