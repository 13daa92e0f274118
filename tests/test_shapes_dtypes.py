"""Shapes are never broadcast and accumulators never silently lose precision, for every registry
optimizer (issue 13 item 4, issue 18 items 1 and 6)."""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.cases import CASES
from tests.cases import IDS


def _params(dtype=jnp.float32):
    return {"b": jnp.zeros(3, dtype), "w": jnp.ones((2, 3), dtype)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_of_the_wrong_shape_is_refused_naming_the_path(case):
    tx = case.make()
    params = _params()
    state = tx.init(params)
    wrong = {"b": jnp.ones((3, 1)), "w": jnp.ones((2, 3))}  # (3, 1) against the (3,) param 'b'
    with pytest.raises(ValueError, match=r"'b' has shape \(3, 1\).*shape \(3,\)"):
        tx.update(wrong, state, params)
    keeps_param_shaped_state = any(
        getattr(leaf, "shape", None) == (3,) for leaf in jax.tree.leaves(state)
    )
    if not case.needs_params and keeps_param_shaped_state:
        # without params, the state is what the gradient is checked against
        with pytest.raises(ValueError, match=r"'b' has shape \(3, 1\)"):
            tx.update(wrong, state)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_params_of_the_wrong_shape_are_refused_naming_the_path(case):
    tx = case.make()
    state = tx.init(_params())
    grads = jax.tree.map(jnp.ones_like, _params())
    with pytest.raises(ValueError, match=r"'w' has shape \(2, 3\).*shape \(3, 2\)"):
        tx.update(grads, state, {"b": jnp.zeros(3), "w": jnp.ones((3, 2))})


def test_apply_updates_never_broadcasts_and_never_truncates():
    with pytest.raises(ValueError, match=r"'a/w' has shape \(2, 3\).*shape \(3,\)"):
        optix.apply_updates({"a": {"w": jnp.ones(3)}}, {"a": {"w": jnp.ones((2, 3))}})
    with pytest.raises(TypeError, match="'n'.*float32.*int32.*fraction"):
        optix.apply_updates({"n": jnp.ones(3, jnp.int32)}, {"n": jnp.full(3, 0.5)})
    with pytest.raises(TypeError, match="'z'.*complex64.*float32.*imaginary"):
        optix.apply_updates({"z": jnp.ones(3)}, {"z": jnp.ones(3, jnp.complex64)})
    # what stays allowed: float32 updates onto bf16 params (kept in bf16), int onto int, None
    out = optix.apply_updates(
        {"h": jnp.ones(2, jnp.bfloat16), "n": jnp.ones(2, jnp.int32), "x": None},
        {"h": jnp.full(2, 0.5), "n": jnp.ones(2, jnp.int32), "x": None},
    )
    assert out["h"].dtype == jnp.bfloat16 and out["n"].dtype == jnp.int32 and out["x"] is None
    np.testing.assert_array_equal(out["n"], [2, 2])


def test_bf16_adam_second_moment_accumulates_in_float32():
    """A constant gradient of 1 for 3000 steps: ``nu`` must approach 1 - 0.999^3000 = 0.9502.
    bf16 moments stall far below it (0.25), because ``0.999 * nu`` rounds back to ``nu``."""
    tx = optix.scale_by_adam()
    params = jnp.zeros(4, jnp.bfloat16)
    state = tx.init(params)
    assert state.mu.dtype == jnp.float32 and state.nu.dtype == jnp.float32

    def body(state, _):
        updates, state = tx.update(jnp.ones(4, jnp.bfloat16), state)
        return state, updates

    state, updates = jax.lax.scan(body, state, None, length=3000)
    assert updates.dtype == jnp.bfloat16
    np.testing.assert_allclose(state.nu, 1 - 0.999**3000, rtol=1e-4)
    # an explicit request still wins
    assert optix.scale_by_adam(nu_dtype=jnp.bfloat16).init(params).nu.dtype == jnp.bfloat16


# Exact copies of a param or a gradient in its own dtype: nothing accumulates in them.
_COPIES = {"params0", "prev_grad", "cache"}


def _float_state_leaves(state):
    return [
        (path, leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
        and leaf.ndim > 0
        and not _COPIES & {getattr(k, "name", None) for k in path}
    ]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_low_precision_params_get_float32_accumulators(case):
    params = {"b": jnp.zeros(3, jnp.bfloat16), "w": jnp.ones((4, 3), jnp.bfloat16)}
    tx = case.make()
    state = tx.init(params)
    low = [
        (jax.tree_util.keystr(path), leaf.dtype)
        for path, leaf in _float_state_leaves(state)
        if jnp.finfo(leaf.dtype).bits < 32
    ]
    assert not low, f"{case.name}: low-precision state leaves {low}"


def _dtype_arguments(factory):
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    return [name for name in signature.parameters if name.endswith("_dtype")]


_DTYPE_CASES = [(c, arg) for c in CASES for arg in _dtype_arguments(c.factory)]


@pytest.mark.parametrize(
    ("case", "argument"), _DTYPE_CASES, ids=[f"{c.name}-{a}" for c, a in _DTYPE_CASES]
)
@pytest.mark.parametrize("dtype", [jnp.int8, jnp.bool_, "int32"])
def test_integer_or_bool_state_dtypes_are_refused_naming_the_argument(case, argument, dtype):
    with pytest.raises(TypeError, match=f"`{argument}` must be a float dtype"):
        tx = case.make(**{argument: dtype})
        tx.init(_params())


def test_every_family_with_moments_offers_a_dtype_argument():
    assert len({arg for _, arg in _DTYPE_CASES}) >= 3
    assert len(_DTYPE_CASES) >= 20


@pytest.mark.parametrize(
    ("argument", "make"),
    [
        ("slow_dtype", lambda d: optix.lookahead(optix.sgd(0.1), 2, 0.5, slow_dtype=d)),
        ("ema_dtype", lambda d: optix.param_ema(0.9, ema_dtype=d)),
        ("avg_dtype", lambda d: optix.swa(avg_dtype=d)),
        ("acc_dtype", lambda d: optix.accumulate(optix.sgd(0.1), 2, acc_dtype=d)),
    ],
)
@pytest.mark.parametrize("dtype", [jnp.int8, jnp.bool_])
def test_wrappers_refuse_integer_or_bool_state_dtypes_naming_the_argument(argument, make, dtype):
    with pytest.raises(TypeError, match=f"`{argument}` must be a float dtype"):
        make(dtype)


MOMENT_TRANSFORMS = {
    "adabelief": (optix.scale_by_adabelief, ("mu", "nu")),
    "yogi": (optix.scale_by_yogi, ("mu", "nu")),
    "adopt": (optix.scale_by_adopt, ("mu", "nu")),
    "ademamix": (optix.scale_by_ademamix, ("m1", "m2", "nu")),
    "adan": (optix.scale_by_adan, ("mu", "delta", "nu")),
    "lion": (optix.scale_by_lion, ("mu",)),
    "signum": (optix.scale_by_signum, ("mu",)),
}


@pytest.mark.parametrize("name", list(MOMENT_TRANSFORMS))
def test_moment_dtypes_are_chosen_updates_keep_the_gradient_dtype(name):
    factory, fields = MOMENT_TRANSFORMS[name]
    kwargs = {"mu_dtype": jnp.bfloat16}
    if "nu" in fields:
        kwargs["nu_dtype"] = jnp.bfloat16
    tx = factory(**kwargs)
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(3, jnp.float32)}
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    updates, state = jax.jit(tx.update)(grads, state)
    for field in fields:
        assert {x.dtype for x in jax.tree.leaves(getattr(state, field))} == {
            jnp.dtype(jnp.bfloat16)
        }, field
    assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    chex.assert_tree_all_finite(updates)


CONVERGING = {
    "madgrad": lambda: optix.madgrad(0.05),
    "cocob": lambda: optix.cocob(),
    "dog": lambda: optix.dog(),
    "dowg": lambda: optix.dowg(),
    "simplified_ademamix": lambda: optix.simplified_ademamix(1e-3, alpha=2.0),
    "acprop": lambda: optix.acprop(0.05),
}


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
    chex.assert_tree_all_finite(updates)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        where = jax.tree_util.keystr(path)
        if "params0" not in where and jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, where  # only the copy of x_0 keeps the params' dtype
