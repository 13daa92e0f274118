"""The core: transforms, chain, apply_updates, and protocol compatibility with optax."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix

optax = pytest.importorskip("optax")

PARAMS = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
GRADS = {"w": jnp.full((2, 3), 0.5, jnp.float32), "b": jnp.arange(3, dtype=jnp.float32)}


def test_identity_set_to_zero_and_stateless():
    assert optix.identity().init(PARAMS) == optix.EmptyState()
    chex.assert_trees_all_equal(optix.identity().update(GRADS, optix.EmptyState())[0], GRADS)
    zeros, _ = optix.set_to_zero().update(GRADS, optix.EmptyState())
    chex.assert_trees_all_equal(zeros, jax.tree.map(jnp.zeros_like, GRADS))
    double = optix.stateless(lambda u, p: jax.tree.map(lambda x, q: 2 * x + q, u, p))
    out, state = double.update(GRADS, double.init(PARAMS), PARAMS)
    chex.assert_trees_all_close(out, jax.tree.map(lambda g, p: 2 * g + p, GRADS, PARAMS))
    assert state == optix.EmptyState()


def test_apply_updates_keeps_param_dtypes_and_passes_none():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": None, "c": jnp.ones(2, jnp.float32)}
    updates = {"a": jnp.full(2, 1e-3, jnp.float32), "b": None, "c": jnp.full(2, 1.0, jnp.float32)}
    new = optix.apply_updates(params, updates)
    assert new["a"].dtype == jnp.bfloat16 and new["b"] is None
    np.testing.assert_array_equal(new["c"], [2.0, 2.0])
    # a None update leaves its param as it is
    kept = optix.apply_updates({"a": jnp.ones(2)}, {"a": None})
    np.testing.assert_array_equal(kept["a"], [1.0, 1.0])


def test_sign_convention_only_scale_lr_flips():
    tx = optix.chain(optix.scale_by_adam(), optix.scale(2.0))
    direction, _ = tx.update(GRADS, tx.init(PARAMS))
    assert float(direction["w"][0, 0]) > 0  # a direction, not a step
    step, _ = optix.sgd(0.1).update(GRADS, optix.sgd(0.1).init(PARAMS))
    chex.assert_trees_all_close(step, jax.tree.map(lambda g: -0.1 * g, GRADS), rtol=1e-6)


def test_chain_forwards_extra_arguments_only_to_members_that_take_them():
    seen = {}

    def update_with_extra(updates, state, params=None, **extra):
        seen.update(extra)
        return updates, state

    strict_calls = []

    def update_strict(updates, state, params=None):
        strict_calls.append(1)
        return updates, state

    tx = optix.chain(
        optix.GradientTransformation(lambda p: (), update_with_extra),
        optix.GradientTransformation(lambda p: (), update_strict),
        optix.adam(1e-3),
    )
    tx.update(GRADS, tx.init(PARAMS), PARAMS, value=jnp.float32(1.5), value_fn=None)
    assert float(seen["value"]) == 1.5 and "value_fn" in seen
    assert strict_calls == [1]


def test_chain_state_is_a_tuple_and_wrong_state_is_an_error():
    tx = optix.chain(optix.scale_by_adam(), optix.scale_lr(0.1))
    state = tx.init(PARAMS)
    assert isinstance(state, tuple) and len(state) == 2
    with pytest.raises(ValueError, match="chain of 2 transforms"):
        tx.update(GRADS, state[:1])


@pytest.fixture
def optax_promotion():
    """optax's own code relies on standard dtype promotion (a weak float ** int32 count)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


@pytest.mark.usefixtures("optax_promotion")
def test_optax_transforms_inside_optix_chain():
    mine = optix.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optix.scale_lr(1e-2))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    s1, s2 = mine.init(PARAMS), theirs.init(PARAMS)
    for _ in range(5):
        u1, s1 = jax.jit(mine.update)(GRADS, s1, PARAMS)
        u2, s2 = jax.jit(theirs.update)(GRADS, s2, PARAMS)
        chex.assert_trees_all_close(u1, u2, rtol=1e-6, atol=1e-8)


@pytest.mark.usefixtures("optax_promotion")
def test_optix_optimizers_inside_optax_chain_and_extra_args():
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optix.adam(1e-2))
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    s1, s2 = theirs.init(PARAMS), reference.init(PARAMS)
    for _ in range(5):
        u1, s1 = theirs.update(GRADS, s1, PARAMS, value=jnp.float32(1.0))
        u2, s2 = reference.update(GRADS, s2, PARAMS)
        # float32: optax forms 1 - b2 from the Python float but b2**t from float32, a 6.7e-6
        # relative inconsistency that optix (float32 b2 in both places) does not have.
        chex.assert_trees_all_close(u1, u2, rtol=2e-5, atol=1e-8)
    # optax's apply_updates accepts optix updates too
    chex.assert_trees_all_close(optax.apply_updates(PARAMS, u1), optix.apply_updates(PARAMS, u1))


def test_named_chain_matches_chain_and_validates_names():
    named = optix.named_chain(("clip", optix.clip(0.5)), ("opt", optix.sgd(0.1)))
    plain = optix.chain(optix.clip(0.5), optix.sgd(0.1))
    chex.assert_trees_all_equal(
        named.update(GRADS, named.init(PARAMS))[0], plain.update(GRADS, plain.init(PARAMS))[0]
    )
    with pytest.raises(ValueError, match="unique"):
        optix.named_chain(("a", optix.identity()), ("a", optix.identity()))
    with pytest.raises(ValueError, match="'/'"):
        optix.named_chain(("a/b", optix.identity()))


def test_incremental_update():
    new = {"w": jnp.ones(2, jnp.float32)}
    old = {"w": jnp.zeros(2, jnp.bfloat16)}
    out = optix.incremental_update(new, old, 0.25)
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(out["w"].astype(jnp.float32), [0.25, 0.25])
    with pytest.raises(ValueError, match="step_size"):
        optix.incremental_update(new, old, 1.5)


def test_clip_by_global_norm_zero_gradients_give_zeros_not_nan():
    tx = optix.clip_by_global_norm(1.0)
    zeros = jax.tree.map(jnp.zeros_like, GRADS)
    out, _ = jax.jit(tx.update)(zeros, tx.init(PARAMS))
    chex.assert_trees_all_equal(out, zeros)
    # with max_norm 0 too
    tx0 = optix.clip_by_global_norm(0.0)
    out, _ = tx0.update(zeros, tx0.init(PARAMS))
    chex.assert_tree_all_finite(out)


def test_clip_by_global_norm_in_bf16_does_not_overflow():
    big = {"w": jnp.full((64,), 3e4, jnp.bfloat16)}  # sum of squares overflows bf16? no: f32
    tx = optix.clip_by_global_norm(1.0)
    out, _ = tx.update(big, tx.init(big))
    norm = float(jnp.sqrt(jnp.sum(out["w"].astype(jnp.float32) ** 2)))
    assert out["w"].dtype == jnp.bfloat16 and norm == pytest.approx(1.0, rel=1e-2)


def test_differentiating_through_clipping_an_all_zero_gradient_gives_zero():
    """The norm's square root has derivative 0 at 0 here, so no inf * 0 = NaN reaches the grads."""
    tx = optix.clip_by_global_norm(1.0)

    def clipped_sum(g):
        out, _ = tx.update(g, tx.init(g))
        return sum(jnp.sum(x) for x in jax.tree.leaves(out))

    zeros = jax.tree.map(jnp.zeros_like, GRADS)
    # below max_norm clipping is the identity
    grads = jax.jit(jax.grad(clipped_sum))(zeros)
    chex.assert_trees_all_equal(grads, jax.tree.map(jnp.ones_like, zeros))
    chex.assert_trees_all_equal(jax.grad(optix._tree.global_norm)(zeros), zeros)
    # away from zero the derivative is the usual g / |g|
    g = jax.grad(optix._tree.global_norm)({"a": jnp.array([3.0, 4.0])})
    np.testing.assert_allclose(g["a"], [0.6, 0.8], rtol=1e-6)


def test_global_norm_of_a_nan_gradient_is_nan():
    grads = {"a": jnp.array([1.0, jnp.nan]), "b": jnp.ones(2)}
    assert bool(jnp.isnan(optix._tree.global_norm(grads)))
    assert float(optix._tree.global_norm({"a": jnp.array([jnp.inf, 1.0])})) == np.inf


def _compiled_size(tx, n_leaves: int) -> int:
    params = {f"p{i:03d}": jnp.ones((8,), jnp.float32) for i in range(n_leaves)}

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optix.apply_updates(p, u), s

    return len(jax.jit(step).lower(params, tx.init(params), params).compile().as_text())


def test_global_norm_clipping_compiles_to_code_linear_in_the_leaf_count():
    """Each leaf's kernel reads the clip factor as an input, rather than recomputing the sum over
    all leaves: XLA copies cheap scalar ops into every consumer, which once made the compiled
    program (and the compile time) grow with the square of the number of leaves."""
    tx = optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(1e-3))
    small, large = _compiled_size(tx, 40), _compiled_size(tx, 120)
    assert large < 4 * small, (small, large)  # 3x the leaves; quadratic growth would give ~9x


def test_add_decayed_weights_mask_function_and_array_mask():
    by_ndim = optix.add_decayed_weights(0.5, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    out, _ = by_ndim.update(GRADS, by_ndim.init(PARAMS), PARAMS)
    chex.assert_trees_all_close(out, {"w": GRADS["w"] + 0.5 * PARAMS["w"], "b": GRADS["b"]})
    array_mask = {"w": jnp.array(False), "b": jnp.array(True)}
    tx = optix.add_decayed_weights(0.5, mask=array_mask)
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    out, _ = jax.jit(tx.update)(GRADS, tx.init(params), params)
    chex.assert_trees_all_close(out, {"w": GRADS["w"], "b": GRADS["b"] + 0.5})


def test_complex_params_adam_uses_modulus():
    params = {"z": jnp.array([1 + 1j, 2 - 1j], jnp.complex64)}
    grads = {"z": jnp.array([0.5 - 0.5j, -1 + 2j], jnp.complex64)}
    tx = optix.scale_by_adam(b1=0.0, b2=0.0, eps=0.0)
    out, state = tx.update(grads, tx.init(params), params)
    assert out["z"].dtype == jnp.complex64
    assert state.nu["z"].dtype == jnp.float32  # |g|^2 is real
    # with b1 = b2 = 0 the update is g / |g|: unit modulus, the gradient's phase
    np.testing.assert_allclose(jnp.abs(out["z"]), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(jnp.angle(out["z"]), jnp.angle(grads["z"]), rtol=1e-6)


def test_moment_dtypes_are_selectable():
    tx = optix.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.float32)
    params = {"w": jnp.ones(3, jnp.float32)}
    state = tx.init(params)
    assert state[0].mu["w"].dtype == jnp.bfloat16 and state[0].nu["w"].dtype == jnp.float32
    updates, new_state = jax.jit(tx.update)(params, state, params)
    assert updates["w"].dtype == jnp.float32 and new_state[0].mu["w"].dtype == jnp.bfloat16


def test_add_decayed_weights_mask_by_path_patterns():
    params = {
        "enc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
        "norm": {"scale": jnp.ones(2)},
    }
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = optix.add_decayed_weights(0.5, mask={"**/bias": False, "norm": False, "**": True})
    out, _ = tx.update(grads, tx.init(params), params)
    expected = {
        "enc": {"kernel": 0.5 * params["enc"]["kernel"], "bias": jnp.zeros(2)},
        "norm": {"scale": jnp.zeros(2)},
    }
    chex.assert_trees_all_close(out, expected)
