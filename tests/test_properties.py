"""Property tests over random tree shapes, dtypes and hyperparameters."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import optix
from tests.cases import CASES

DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def trees(draw):
    """A nested dict/list tree of random-shaped leaves of one random float dtype."""
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    leaf_shapes = draw(st.lists(shapes, min_size=1, max_size=4))
    leaves = [jnp.asarray(rng.normal(size=s), dtype) for s in leaf_shapes]
    layout = draw(st.sampled_from(["dict", "list", "nested"]))
    if layout == "dict":
        return {f"p{i}": x for i, x in enumerate(leaves)}
    if layout == "list":
        return leaves
    return {"a": leaves[:1], "b": {f"q{i}": x for i, x in enumerate(leaves[1:])}}


def _make_for(case, params):
    """``case``'s optimizer for ``params``. A matrix optimizer may refuse a leaf of three or more
    axes without a ``matrix_spec`` (which axes form the matrix cannot be told from the shape):
    then check that it says so, naming the leaf, and say it (a stack of matrices on axis 0)."""
    tx = case.make()
    try:
        tx.init(params)
    except ValueError as err:
        cubes = [
            optix._keypath.path_str(path)
            for path, x in jax.tree_util.tree_leaves_with_path(params)
            if x.ndim >= 3
        ]
        if not cubes or "`matrix_spec`" not in str(err):
            raise
        assert any(f"'{path}'" in str(err) for path in cubes), err
        stack = optix.MatrixSpec(batch_axes=(0,))
        return case.make(matrix_spec=jax.tree.map(lambda x: stack if x.ndim >= 3 else None, params))
    return tx


@SETTINGS
@given(params=trees(), case_index=st.integers(0, len(CASES) - 1))
def test_every_optimizer_keeps_structure_dtype_and_finiteness(params, case_index):
    tx = _make_for(CASES[case_index], params)
    state = tx.init(params)
    grads = jax.tree.map(lambda x: (x * 0.5 + 0.1).astype(x.dtype), params)
    for _ in range(2):
        updates, state = tx.update(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert u.dtype == p.dtype and u.shape == p.shape
        assert bool(jnp.all(jnp.isfinite(u.astype(jnp.float32))))


@SETTINGS
@given(params=trees(), lr=st.floats(0.0, 10.0, allow_nan=False))
def test_plain_sgd_is_minus_lr_times_gradient(params, lr):
    tx = optix.sgd(lr)
    updates, _ = tx.update(params, tx.init(params))
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        expected = (-np.float32(lr) * np.asarray(g, np.float32)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(u, np.float32), expected, rtol=1e-2, atol=1e-6)


@SETTINGS
@given(params=trees(), max_norm=st.floats(1e-3, 100.0), scale=st.floats(1e-3, 1e3))
def test_clip_by_global_norm_bounds_the_norm_and_keeps_direction(params, max_norm, scale):
    grads = jax.tree.map(lambda x: (x.astype(jnp.float32) * scale).astype(x.dtype), params)
    tx = optix.clip_by_global_norm(max_norm)
    out, _ = tx.update(grads, tx.init(params))
    norm_in = float(optix._tree.global_norm(grads))
    norm_out = float(optix._tree.global_norm(out))
    tol = 1e-2 if grads and jax.tree.leaves(grads)[0].dtype != jnp.float32 else 1e-5
    assert norm_out <= max_norm * (1 + tol) + 1e-12
    if norm_in <= max_norm:  # no clipping needed: unchanged, bit for bit
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(grads), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@SETTINGS
@given(
    params=trees(),
    b1=st.floats(0.0, 0.999),
    b2=st.floats(0.0, 0.9999),
    eps=st.floats(1e-10, 1e-2),
)
def test_adam_first_step_is_bounded_by_one(params, b1, b2, eps):
    """After one step |m_hat / (sqrt(v_hat) + eps)| = |g| / (|g| + eps) <= 1 for any betas."""
    tx = optix.scale_by_adam(b1, b2, eps)
    out, _ = tx.update(params, tx.init(params))
    for u in jax.tree.leaves(out):
        assert float(jnp.max(jnp.abs(u.astype(jnp.float32)), initial=0.0)) <= 1.0 + 1e-2


def _wrong_shape(draw, shape):
    """A shape that differs from ``shape`` but has as many or more elements to broadcast from."""
    choice = draw(st.sampled_from(["extra_axis", "leading_axis", "grown"]))
    if choice == "extra_axis":
        return (*shape, 1)
    if choice == "leading_axis":
        return (draw(st.integers(1, 3)), *shape)
    if not shape:
        return (2,)
    axis = draw(st.integers(0, len(shape) - 1))
    return tuple(n + 1 if i == axis else n for i, n in enumerate(shape))


@st.composite
def wrong_gradients(draw):
    params = draw(trees())
    paths_leaves = jax.tree_util.tree_leaves_with_path(params)
    index = draw(st.integers(0, len(paths_leaves) - 1))
    path, leaf = paths_leaves[index]
    bad_shape = _wrong_shape(draw, leaf.shape)
    leaves = [x for _, x in paths_leaves]
    leaves[index] = jnp.ones(bad_shape, leaf.dtype)
    grads = jax.tree.unflatten(jax.tree.structure(params), leaves)
    return params, grads, optix._keypath.path_str(path)


@SETTINGS
@given(example=wrong_gradients(), case_index=st.integers(0, len(CASES) - 1))
def test_a_gradient_of_another_shape_is_refused_by_every_optimizer(example, case_index):
    params, grads, path = example
    tx = _make_for(CASES[case_index], params)
    state = tx.init(params)
    try:
        tx.update(grads, state, params)
    except ValueError as err:
        assert f"'{path}'" in str(err)
    else:
        raise AssertionError(f"{CASES[case_index].name} accepted a gradient of the wrong shape")


def _arguments(factory):
    try:
        return list(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return []


_DTYPE_CASES = [
    (c, name) for c in CASES for name in _arguments(c.factory) if name.endswith("_dtype")
]


@SETTINGS
@given(
    index=st.integers(0, max(len(_DTYPE_CASES) - 1, 0)),
    dtype=st.sampled_from([jnp.int8, jnp.uint8, jnp.int32, jnp.bool_, "int16"]),
)
def test_integer_state_dtypes_are_refused(index, dtype):
    case, name = _DTYPE_CASES[index]
    try:
        case.make(**{name: dtype}).init({"w": jnp.ones(3)})
    except TypeError as err:
        assert f"`{name}`" in str(err)
    else:
        raise AssertionError(f"{case.name} accepted {name}={dtype}")


@SETTINGS
@given(
    case_index=st.integers(0, len(CASES) - 1),
    lr=st.one_of(
        st.floats(max_value=-1e-30, allow_infinity=True, allow_nan=False),
        st.just(float("nan")),
        st.just(float("inf")),
    ),
)
def test_a_negative_or_non_finite_learning_rate_is_refused(case_index, lr):
    case = CASES[case_index]
    try:
        case.make(learning_rate=lr)
    except ValueError as err:
        assert "learning_rate" in str(err)
    else:
        raise AssertionError(f"{case.name} accepted learning_rate={lr}")


_BETA_CASES = [(c, name) for c in CASES for name in _arguments(c.factory) if name in ("b1", "b2")]


@SETTINGS
@given(
    index=st.integers(0, len(_BETA_CASES) - 1),
    beta=st.one_of(st.floats(min_value=1.0, allow_nan=False), st.floats(max_value=-1e-30)),
)
def test_a_beta_outside_the_unit_interval_is_refused(index, beta):
    case, name = _BETA_CASES[index]
    try:
        case.make(**{name: beta})
    except ValueError as err:
        assert f"`{name}`" in str(err)
    else:
        raise AssertionError(f"{case.name} accepted {name}={beta}")
