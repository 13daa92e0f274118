"""optix.pack / optix.unpack: packed params, packed gradients, optimizers run on packed buffers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix._fusable import is_elementwise
from tests.cases import CASES


def _tree():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "b": [jnp.asarray(rng.normal(size=4), jnp.float32), None],
        "h": jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16),
        "s": jnp.asarray(rng.normal(), jnp.float32),
    }


def _loss(tree):
    with jax.numpy_dtype_promotion("standard"):
        return sum(jnp.sum(jnp.sin(x.astype(jnp.float32)) * x) for x in jax.tree.leaves(tree))


def test_round_trip_groups_by_dtype():
    tree = _tree()
    packed = optix.pack(tree)
    assert packed.layout.buffer_dtypes == ("float32", "bfloat16")
    assert [b.shape for b in packed.buffers] == [(17,), (4,)]
    assert [b.dtype for b in packed.buffers] == [jnp.float32, jnp.bfloat16]
    back = optix.unpack(packed)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
    assert optix.pack(packed) is packed
    assert packed.unpack()["s"].shape == ()
    assert "2 buffers" in repr(packed) or "float32[17]" in repr(packed)


def test_grad_through_unpack_is_packed_and_matches():
    tree = _tree()
    packed = optix.pack(tree)
    g_packed = jax.jit(jax.grad(lambda p: _loss(optix.unpack(p))))(packed)
    assert isinstance(g_packed, optix.Packed)
    assert g_packed.layout == packed.layout
    g_tree = jax.grad(_loss)(tree)
    for x, y in zip(jax.tree.leaves(optix.unpack(g_packed)), jax.tree.leaves(g_tree), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    "case", [c for c in CASES if is_elementwise(c.make())], ids=lambda c: c.name
)
def test_elementwise_optimizer_runs_on_packed_params(case):
    """init/update/apply_updates directly on Packed params and gradients equal the tree run."""
    tree = {k: v for k, v in _tree().items() if k != "h"}  # float32 only: tight tolerance
    tx = case.make()

    def run(params, to_loss):
        state = tx.init(params)
        step = jax.jit(
            lambda p, s: (lambda u, s: (optix.apply_updates(p, u), s))(
                *tx.update(jax.grad(lambda q: _loss(to_loss(q)))(p), s, p)
            )
        )
        for _ in range(3):
            params, state = step(params, state)
        return params

    want = run(tree, lambda q: q)
    got = run(optix.pack(tree), optix.unpack)
    assert isinstance(got, optix.Packed)
    for x, y in zip(jax.tree.leaves(optix.unpack(got)), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_packed_through_scan_cond_and_eval_shape():
    packed = optix.pack(_tree())
    out, _ = jax.lax.scan(lambda p, _: (jax.tree.map(lambda x: x * 2, p), None), packed, None, 2)
    assert isinstance(out, optix.Packed) and out.layout == packed.layout
    chosen = jax.lax.cond(True, lambda p: p, lambda p: jax.tree.map(jnp.zeros_like, p), packed)
    assert chosen.layout == packed.layout
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _tree())
    abstract = jax.eval_shape(optix.pack, shapes)
    assert abstract.layout == packed.layout


def test_group_by_splits_buffers_and_empty_tree():
    tree = {"a": jnp.ones(3), "b": jnp.ones((2, 2)), "c": jnp.ones(1)}
    packed = optix.pack(tree, group_by=lambda x: x.ndim)
    assert [b.shape for b in packed.buffers] == [(4,), (4,)]
    assert jax.tree.map(lambda x: x.shape, optix.unpack(packed)) == {
        "a": (3,),
        "b": (2, 2),
        "c": (1,),
    }
    empty = optix.pack({})
    assert empty.buffers == () and optix.unpack(empty) == {}


def test_errors():
    with pytest.raises(TypeError, match="Packed"):
        optix.unpack({"a": jnp.ones(2)})
    from optix._pack import pack_like

    layout = optix.pack({"a": jnp.ones(2)}).layout
    with pytest.raises(ValueError, match="cannot pack"):
        pack_like({"a": jnp.ones(3)}, layout)


# ---- masks and labels on packed params: resolved through the layout ----------------------------


def test_masks_resolve_through_the_pack_layout():
    """adamw's mask on packed params decays exactly the leaves it names, as on the tree."""
    params = {
        "dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
        "norm": {"scale": jnp.ones(4)},
    }
    grads = jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), params)
    packed, packed_grads = optix.pack(params), optix.pack(grads)
    for mask in [
        {"**/bias": False, "**/scale": False, "**": True},  # patterns see the original paths
        {"dense": {"kernel": True, "bias": False}, "norm": False},  # so does a prefix tree
        lambda p: jax.tree.map(lambda x: x.ndim > 1, p),  # and a function (shapes only)
    ]:
        tx = optix.adamw(0.1, weight_decay=0.5, mask=mask)
        expected, _ = tx.update(grads, tx.init(params), params)
        assert not np.array_equal(expected["dense"]["kernel"], expected["dense"]["bias"][0])
        updates, _ = jax.jit(tx.update)(packed_grads, tx.init(packed), packed)
        got = optix.unpack(updates)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    # a typo is caught on packed params too
    with pytest.raises(ValueError, match="'\\*\\*/biases' matches no leaf"):
        optix.adamw(0.1, mask={"**/biases": False, "**": True}).init(packed)


def test_masked_and_partition_on_packed_params_need_whole_buffers():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    packed = optix.pack(params)
    with pytest.raises(ValueError, match="packed buffer holds 'b' \\(False\\) and 'w' \\(True\\)"):
        optix.masked(optix.sgd(0.1), {"w": True, "b": False}).init(packed)
    with pytest.raises(ValueError, match="Pack each group on its own"):
        optix.partition({"x": optix.sgd(0.1), "y": optix.sgd(1.0)}, {"w": "x", "b": "y"}).init(
            packed
        )
    # one pack per group: patterns see each group's original paths
    groups = {"decay": optix.pack({"w": params["w"]}), "plain": optix.pack({"b": params["b"]})}
    tx = optix.partition({"x": optix.sgd(0.1), "y": optix.sgd(1.0)}, {"**/w": "x", "**/b": "y"})
    updates, _ = tx.update(groups, tx.init(groups), groups)
    np.testing.assert_allclose(
        optix.unpack(updates["decay"])["w"], -0.1 * np.ones((2, 2)), rtol=1e-6
    )
    np.testing.assert_allclose(optix.unpack(updates["plain"])["b"], -np.ones(2), rtol=1e-6)
