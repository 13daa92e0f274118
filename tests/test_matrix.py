"""What the matrix optimizers (Muon, Shampoo, SOAP) share: argument checks, blocks, compile size,
empty leaves and the dtypes of their state.
"""

from __future__ import annotations

import collections
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def test_matrix_optimizers_reject_complex_and_bad_options():
    z = {"w": jnp.zeros((2, 2), jnp.complex64)}
    for tx in (optix.scale_by_shampoo(), optix.scale_by_soap()):
        with pytest.raises(TypeError, match="complex"):
            tx.init(z)
    with pytest.raises(ValueError, match="ndim >= 2"):
        optix.scale_by_muon().init({"b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="beta"):
        optix.scale_by_muon(beta=1.0)
    with pytest.raises(ValueError, match="scale_mode"):
        optix.scale_by_muon(scale_mode="wide")
    with pytest.raises(TypeError, match="precondition_frequency"):
        optix.scale_by_shampoo(precondition_frequency=2.5)
    with pytest.raises(ValueError, match="graft"):
        optix.scale_by_shampoo(graft="lion")
    with pytest.raises(ValueError, match="stat_decay"):
        optix.scale_by_shampoo(stat_decay=1.5)
    with pytest.raises(ValueError, match="shampoo_beta"):
        optix.scale_by_soap(shampoo_beta=1.0)


def test_matrix_optimizers_jit_and_eval_shape_with_conv_and_blocks():
    params = {
        "conv": jnp.ones((1, 2, 2, 3)),
        "w": jnp.ones((6, 3)),
        "b": jnp.ones(4),
        "s": jnp.ones(()),
    }
    grads = jax.tree.map(
        lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape), params
    )
    for tx in (
        optix.muon(0.01),
        optix.shampoo(0.01, block_size=4, precondition_frequency=2, graft="adam"),
        optix.soap(0.01, block_size=4, precondition_frequency=2),
    ):
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        state = tx.init(params)
        assert jax.tree.structure(jax.eval_shape(tx.init, shapes)) == jax.tree.structure(state)
        update = jax.jit(tx.update)
        for _ in range(3):
            u, state = update(grads, state, params)
            for leaf, p in zip(jax.tree.leaves(u), jax.tree.leaves(params), strict=True):
                assert leaf.shape == p.shape and bool(jnp.all(jnp.isfinite(leaf)))


def _hlo_ops(tx, params) -> collections.Counter:
    """The operations of one jitted step, by name (custom calls by target: LAPACK's ``syevd``
    on CPU, cuSOLVER's on GPU), from the lowered program; nothing is compiled."""
    text = jax.jit(tx.update).lower(params, tx.init(params), params).as_text()
    ops = collections.Counter(re.findall(r"\b(?:stablehlo|chlo|func)\.(\w+)", text))
    ops.update(re.findall(r"custom_call @(\w+)", text))
    return ops


@pytest.mark.parametrize(
    "make",
    [
        lambda bs: optix.scale_by_shampoo(block_size=bs, precondition_frequency=2),
        lambda bs: optix.scale_by_soap(block_size=bs),
    ],
    ids=["shampoo", "soap"],
)
def test_the_compiled_step_does_not_grow_with_the_number_of_blocks(make):
    """A 64 x 64 leaf in 256 blocks of 4 x 4 compiles to the same program as in 4 blocks of
    32 x 32: each group of equal blocks takes one batched decomposition (before, one per block:
    256 eigendecompositions and minutes of compile time)."""
    params = {"w": jnp.ones((64, 64))}
    small, large = _hlo_ops(make(4), params), _hlo_ops(make(32), params)
    assert small == large
    assert any("syevd" in op or "eigh" in op or "syevj" in op for op in small), small


def test_blocks_of_several_shapes_match_the_unblocked_math_block_by_block(x64):
    """A 7 x 5 leaf with ``block_size=3`` has four block shapes (3x3, 3x2, 1x3, 1x2); each block's
    first Shampoo step is its own orthogonal factor ``U V^T``, wherever it sits."""
    g = np.random.default_rng(7).standard_normal((7, 5))
    tx = optix.scale_by_shampoo(eps=1e-30, block_size=3)
    u = np.asarray(
        jax.jit(tx.update)({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(g)}))[0]["w"]
    )
    for rows in (slice(0, 3), slice(3, 6), slice(6, 7)):
        for cols in (slice(0, 3), slice(3, 5)):
            uu, _, vt = np.linalg.svd(g[rows, cols], full_matrices=False)
            np.testing.assert_allclose(u[rows, cols], uu @ vt, atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (2, 0, 3)])
@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.muon(0.1),
        lambda: optix.shampoo(0.1, graft="adam"),
        lambda: optix.shampoo(0.1, block_size=2, precondition_frequency=2),
        lambda: optix.soap(0.1, block_size=2),
    ],
    ids=["muon", "shampoo-graft", "shampoo-blocks", "soap"],
)
def test_leaves_with_no_elements_get_zero_size_updates(make, shape):
    params = {"e": jnp.ones(shape), "w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    tx = make()
    state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
    update = jax.jit(tx.update)
    for _ in range(2):
        u, new = update(grads, state, params)
        assert jax.tree.structure(new) == jax.tree.structure(state)
        state = new
    assert u["e"].shape == shape and u["e"].dtype == jnp.float32
    chex.assert_tree_all_finite(u)
    rest = {k: v for k, v in params.items() if k != "e"}
    alone_tx = make()
    alone_state = alone_tx.init(rest)
    for _ in range(2):
        alone, alone_state = alone_tx.update({k: grads[k] for k in rest}, alone_state, rest)
    for k in rest:
        np.testing.assert_allclose(u[k], alone[k], rtol=1e-6)


def test_matrix_state_of_low_precision_params_defaults_to_float32():
    """bf16 params: Shampoo's and SOAP's statistics, roots and bases and Muon's momentum are
    float32 unless a dtype is asked for; updates stay bf16."""
    params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.ones(3, jnp.bfloat16)}
    matrices = {"w": params["w"]}
    f32, bf16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)

    def dtypes(tree):
        return {x.dtype for x in jax.tree.leaves(tree) if x.ndim}

    shampoo = optix.scale_by_shampoo(graft="adam").init(params)
    assert dtypes((shampoo.leaves, shampoo.graft)) == {f32}
    assert dtypes(optix.scale_by_soap().init(params)) == {f32}
    assert dtypes(optix.scale_by_muon().init(matrices).mu) == {f32}
    assert dtypes(optix.scale_by_shampoo(stat_dtype=jnp.bfloat16).init(params).leaves) == {bf16}
    assert dtypes(optix.scale_by_soap(stat_dtype=jnp.bfloat16).init(params).leaves) == {bf16}
    assert dtypes(optix.scale_by_muon(mu_dtype=jnp.bfloat16).init(matrices).mu) == {bf16}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
    for tx in (optix.shampoo(0.1), optix.soap(0.1), optix.muon(0.1)):
        u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        assert {x.dtype for x in jax.tree.leaves(u)} == {bf16}


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda d: optix.scale_by_shampoo(stat_dtype=d), "stat_dtype"),
        (lambda d: optix.shampoo(0.1, stat_dtype=d), "stat_dtype"),
        (lambda d: optix.scale_by_soap(stat_dtype=d), "stat_dtype"),
        (lambda d: optix.soap(0.1, mu_dtype=d), "mu_dtype"),
        (lambda d: optix.scale_by_muon(mu_dtype=d), "mu_dtype"),
        (lambda d: optix.muon(0.1, mu_dtype=d), "mu_dtype"),
    ],
)
def test_integer_or_bool_state_dtypes_are_refused_by_name(make, name):
    for bad in (jnp.int32, jnp.bool_):
        with pytest.raises(TypeError, match=name):
            make(bad).init({"w": jnp.ones((4, 3))})


def test_newton_schulz_pulls_singular_values_toward_one():
    from optix.transforms._orthogonalize import newton_schulz

    o = newton_schulz(jnp.array([[3.0, 0.0], [0.0, 0.5]]), steps=10)
    assert bool(jnp.all(jnp.abs(jnp.diag(o) - 1) < 0.35))
