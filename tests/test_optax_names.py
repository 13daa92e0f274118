"""Behaviour of the transforms added under optax's names: argument checks, dtypes, state, and the
properties their docstrings promise. Their numbers are checked in tests/references.py."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def _tree(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "scalar": jnp.asarray(rng.normal(), dtype),
        "vector": jnp.asarray(rng.normal(size=5), dtype),
        "layer": [jnp.asarray(rng.normal(size=(3, 4)), dtype)],
    }


# ---------------------------------------------------------------------------------------------
# Bad arguments are refused at construction, naming the argument.
# ---------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (lambda: optix.nadamw(1e-3, b1=1.0), "b1"),
    (lambda: optix.nadamw(1e-3, weight_decay=-1.0), "weight_decay"),
    (lambda: optix.nadamw(1e-3, eps_root=1e-8), "eps_root"),
    (lambda: optix.nadamw(1e-3, momentum_decay=1e-2, momentum_schedule=False), "momentum_decay"),
    (lambda: optix.scale_by_nesterov_adam(b2=-0.1), "b2"),
    (lambda: optix.adamaxw(1e-3, eps=-1.0), "eps"),
    (lambda: optix.adamaxw(-1e-3), "learning_rate"),
    (lambda: optix.optimistic_gradient_descent(0.1, alpha=float("nan")), "alpha"),
    (lambda: optix.optimistic_adam(0.1, beta=float("inf")), "beta"),
    (lambda: optix.polyak_sgd(max_learning_rate=-1.0), "max_learning_rate"),
    (lambda: optix.polyak_sgd(f_min=float("nan")), "f_min"),
    (lambda: optix.polyak_sgd(variant="sps++"), "variant"),
    (lambda: optix.scale_by_polyak(eps=-1.0), "eps"),
    (lambda: optix.scale_by_stddev(decay=1.5), "decay"),
    (lambda: optix.scale_by_stddev(initial_scale=-1.0), "initial_scale"),
    (lambda: optix.normalize_by_update_norm(scale_factor=float("inf")), "scale_factor"),
    (lambda: optix.normalize_by_update_norm(eps=-1.0), "eps"),
    (lambda: optix.scale_by_param_block_norm(-1.0), "min_scale"),
    (lambda: optix.ema(1.0), "decay"),
    (lambda: optix.sgd(0.1, 0.9, trace_dtype=jnp.float32, accumulator_dtype=jnp.float32), "only"),
    (lambda: optix.sgd(0.1, accumulator_dtype=jnp.bfloat16), "accumulator_dtype"),
    (lambda: optix.sgd(0.1, 0.9, accumulator_dtype=jnp.int32), "accumulator_dtype"),
    (lambda: optix.periodic_update(1.0, 0.0, 3, 0), "update_period"),
]


@pytest.mark.parametrize(("make", "name"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_naming_them(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_set_hyperparams_checks_the_new_ranges():
    params = _tree()
    state = optix.polyak_sgd().init(params)
    with pytest.raises(ValueError, match="max_learning_rate"):
        optix.set_hyperparams(state, max_learning_rate=-1.0)
    state = optix.optimistic_gradient_descent(0.1).init(params)
    with pytest.raises(ValueError, match="beta"):
        optix.set_hyperparams(state, beta=float("nan"))
    state = optix.set_hyperparams(state, alpha=0.5, beta=-0.5)  # any finite values
    assert float(optix.get_hyperparams(state)["alpha"]) == 0.5


# ---------------------------------------------------------------------------------------------
# Dtypes: updates in the gradient's dtype, accumulators at least float32, hyperparameters float32.
# ---------------------------------------------------------------------------------------------

TRANSFORMS = {
    "scale_by_nesterov_adam": optix.scale_by_nesterov_adam,
    "scale_by_stddev": lambda: optix.scale_by_stddev(bias_correction=True, initial_scale=0.1),
    "centralize": optix.centralize,
    "normalize_by_update_norm": optix.normalize_by_update_norm,
    "scale_by_param_block_norm": optix.scale_by_param_block_norm,
    "ema": lambda: optix.ema(0.9),
    "zero_nans": optix.zero_nans,
    "scale_by_optimistic_gradient": optix.scale_by_optimistic_gradient,
    "polyak_sgd": optix.polyak_sgd,
    "conditionally_transform": lambda: optix.conditionally_transform(
        optix.adam(1e-2), lambda step: step % 2 == 0
    ),
    "conditionally_mask": lambda: optix.conditionally_mask(
        optix.adam(1e-2), lambda step: step % 2 == 1
    ),
}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_dtypes_are_kept_and_state_is_stable(name, dtype):
    tx = TRANSFORMS[name]()
    params = _tree(dtype)
    state = tx.init(params)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    abstract = jax.eval_shape(tx.init, shapes)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    signature = [(x.shape, x.dtype) for x in jax.tree.leaves(state)]
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(abstract)] == signature
    for leaf in jax.tree.leaves(state):
        if leaf.shape and jnp.issubdtype(leaf.dtype, jnp.floating):
            assert jnp.finfo(leaf.dtype).bits >= 32, name  # no low-precision accumulators
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(grads, state):
        return tx.update(grads, state, params, value=jnp.float32(3.0))

    for seed in range(3):
        updates, state = step(_tree(dtype, seed + 1), state)
        for u in jax.tree.leaves(updates):
            assert u.dtype == dtype
            assert bool(jnp.all(jnp.isfinite(u)))
        assert [(x.shape, x.dtype) for x in jax.tree.leaves(state)] == signature
    for value in optix.get_hyperparams(state).values():
        assert value.dtype == jnp.float32


def test_sgd_accumulator_dtype_is_trace_dtype():
    params = _tree()
    for kwargs in ({"accumulator_dtype": jnp.bfloat16}, {"trace_dtype": jnp.bfloat16}):
        tx = optix.sgd(0.1, momentum=0.9, **kwargs)
        state = tx.init(params)
        traces = optix.state_get(state, "0/trace")
        assert {x.dtype for x in jax.tree.leaves(traces)} == {jnp.dtype(jnp.bfloat16)}
        updates, state = tx.update(_tree(seed=1), state, params)
        assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    # default: the params' dtype widened to at least float32
    state = optix.sgd(0.1, momentum=0.9).init(_tree(jnp.bfloat16))
    traces = optix.state_get(state, "0/trace")
    assert {x.dtype for x in jax.tree.leaves(traces)} == {jnp.dtype(jnp.float32)}


def test_sgd_bf16_accumulator_rounds_the_buffer_not_the_update():
    """float32 params with ``accumulator_dtype=bf16``: ``b_t = 0.9 b_{t-1} + g_t`` in float32 from
    the stored bf16 ``b_{t-1}``, the update uses that float32 ``b_t``, and only the stored buffer is
    rounded. optax keeps its buffer in bf16 too, but multiplies ``0.9 * b_{t-1}`` in bf16, so the
    two drift apart by bf16 roundings."""
    import optax

    params = _tree()
    ours = optix.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
    theirs = optax.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert {x.dtype for x in jax.tree.leaves(optix.state_get(s_ours, "0/trace"))} == {
        jnp.dtype(jnp.bfloat16)
    }
    assert {x.dtype for x in jax.tree.leaves(s_theirs)} >= {jnp.dtype(jnp.bfloat16)}
    buf = [np.zeros(np.shape(x), np.float32) for x in jax.tree.leaves(params)]
    for seed in range(20):
        g = _tree(seed=seed + 1)
        u_ours, s_ours = ours.update(g, s_ours, params)
        for i, (u, gi) in enumerate(zip(jax.tree.leaves(u_ours), jax.tree.leaves(g), strict=True)):
            b = np.float32(0.9) * buf[i] + np.asarray(gi)
            np.testing.assert_allclose(u, -np.float32(0.1) * b, rtol=1e-6, atol=1e-7)
            buf[i] = np.asarray(jnp.asarray(b).astype(jnp.bfloat16).astype(jnp.float32))


# ---------------------------------------------------------------------------------------------
# Properties the docstrings promise.
# ---------------------------------------------------------------------------------------------


def test_scale_by_polyak_needs_the_loss():
    tx = optix.polyak_sgd()
    params = _tree()
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(_tree(seed=1), tx.init(params), params)
    with pytest.raises(ValueError, match="scalar"):
        tx.update(_tree(seed=1), tx.init(params), params, value=jnp.ones(2))


def test_polyak_step_is_capped_and_zero_for_a_zero_gradient():
    tx = optix.polyak_sgd(max_learning_rate=0.25)
    g = {"w": jnp.array([1.0, 0.0])}
    u, _ = tx.update(g, tx.init(g), g, value=100.0)  # gap / |g|^2 = 100, capped at 0.25
    np.testing.assert_allclose(u["w"], [-0.25, 0.0])
    zero = {"w": jnp.zeros(2)}
    u, _ = tx.update(zero, tx.init(zero), zero, value=1.0)
    np.testing.assert_array_equal(u["w"], [0.0, 0.0])


def test_polyak_sps_plus_never_steps_uphill():
    g = {"w": jnp.array([1.0, -2.0])}
    below = -1.0  # a loss below f_min = 0
    u_sps, _ = optix.polyak_sgd().update(g, optix.polyak_sgd().init(g), g, value=below)
    plus = optix.polyak_sgd(variant="sps+")
    u_plus, _ = plus.update(g, plus.init(g), g, value=below)
    assert float(jnp.vdot(u_sps["w"], g["w"])) > 0  # sps: along +grad
    np.testing.assert_array_equal(u_plus["w"], [0.0, 0.0])


def test_polyak_sgd_reaches_the_minimum_of_an_interpolating_problem():
    f = lambda p: jnp.sum((p["w"] - 3.0) ** 2)  # noqa: E731
    tx = optix.polyak_sgd()
    params = {"w": jnp.array([1.0, -2.0, 4.0])}
    state = tx.init(params)
    for _ in range(30):
        value, grad = jax.value_and_grad(f)(params)
        updates, state = tx.update(grad, state, params, value=value)
        params = optix.apply_updates(params, updates)
    assert float(f(params)) < 1e-10


def test_optimistic_adam_refuses_the_deprecated_positional_optimism():
    with pytest.raises(TypeError):
        optix.optimistic_adam(1e-2, 1.0)  # optax's old optimistic_adam(lr, optimism)


def test_optimistic_gradient_first_step_uses_the_current_direction():
    tx = optix.scale_by_optimistic_gradient(alpha=0.5, beta=2.0)
    state = tx.init(jnp.zeros(2))
    u, state = tx.update(jnp.array([1.0, -1.0]), state)
    np.testing.assert_allclose(u, [0.5, -0.5])  # alpha d_1
    u, state = tx.update(jnp.array([3.0, 1.0]), state)
    np.testing.assert_allclose(u, [2.5 * 3.0 - 2.0, 2.5 * 1.0 + 2.0])


def test_optimistic_gradient_descent_converges_on_a_bilinear_game_where_gda_diverges():
    def run(tx):
        params = jnp.array([1.0, 1.0])
        state = tx.init(params)
        for _ in range(100):
            x, y = params
            updates, state = tx.update(jnp.array([y, -x]), state)
            params = optix.apply_updates(params, updates)
        return float(jnp.linalg.norm(params))

    assert run(optix.optimistic_gradient_descent(0.3)) < 0.01
    assert run(optix.sgd(0.3)) > 10.0


def test_nadamw_with_zero_decay_is_nadam():
    params, grads = _tree(), _tree(seed=3)
    a, b = optix.nadamw(1e-2, weight_decay=0.0), optix.nadam(1e-2)
    sa, sb = a.init(params), b.init(params)
    for _ in range(5):
        ua, sa = a.update(grads, sa, params)
        ub, sb = b.update(grads, sb, params)
        for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)


def test_scale_by_stddev_without_bias_correction_is_centered_rms():
    params = _tree()
    a = optix.scale_by_stddev(0.9, 1e-3)
    b = optix.scale_by_rms(0.9, 1e-3, centered=True)
    sa, sb = a.init(params), b.init(params)
    for seed in range(5):
        g = _tree(seed=seed + 1)
        ua, sa = a.update(g, sa)
        ub, sb = b.update(g, sb)
        for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)


def test_ema_without_debias_is_adafactor_momentum():
    params = _tree()
    a, b = optix.ema(0.8, debias=False), optix.adafactor_momentum(0.8)
    sa, sb = a.init(params), b.init(params)
    for seed in range(5):
        g = _tree(seed=seed + 1)
        ua, sa = a.update(g, sa)
        ub, sb = b.update(g, sb)
        for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)


def test_ema_accumulator_dtype():
    state = optix.ema(0.9, accumulator_dtype=jnp.bfloat16).init(_tree())
    assert {x.dtype for x in jax.tree.leaves(state.ema)} == {jnp.dtype(jnp.bfloat16)}
    with pytest.raises(TypeError, match="accumulator_dtype"):
        optix.ema(0.9, accumulator_dtype=jnp.int32).init(_tree())


def test_normalize_by_update_norm_keeps_an_all_zero_update_zero():
    tx = optix.normalize_by_update_norm(eps=0.0)
    zero = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    u, _ = tx.update(zero, tx.init(zero))
    for x in jax.tree.leaves(u):
        np.testing.assert_array_equal(x, 0.0)
    g = {"a": jnp.array([1.0, 2.0, 2.0]), "b": jnp.full((2, 2), 2.0)}  # norm 5
    tx = optix.normalize_by_update_norm(2.0, eps=0.0)
    u, _ = tx.update(g, tx.init(g))
    total = sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(u))
    assert total == pytest.approx(4.0, rel=1e-6)


def test_centralize_rows_have_zero_mean_and_vectors_pass_through():
    rng = np.random.default_rng(0)
    g = {"v": jnp.asarray(rng.normal(size=4)), "k": jnp.asarray(rng.normal(size=(3, 2, 5)))}
    u, _ = optix.centralize().update(g, optix.centralize().init(g))
    np.testing.assert_array_equal(u["v"], g["v"])
    np.testing.assert_allclose(jnp.mean(u["k"], axis=(1, 2)), 0.0, atol=1e-6)


def test_scale_by_param_block_norm_needs_params():
    tx = optix.scale_by_param_block_norm()
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(_tree(), tx.init(_tree()), None)


def test_zero_nans_keeps_infinities_and_handles_complex():
    tx = optix.zero_nans()
    g = {
        "r": jnp.array([jnp.nan, jnp.inf, 1.0]),
        "c": jnp.array([complex(1, float("nan")), 2 + 1j], jnp.complex64),
        "ok": jnp.ones(2, jnp.bfloat16),
    }
    u, s = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_array_equal(u["r"], [0.0, np.inf, 1.0])
    np.testing.assert_array_equal(u["c"], np.array([0, 2 + 1j], np.complex64))
    assert u["ok"].dtype == jnp.bfloat16
    assert (bool(s.found_nan["r"]), bool(s.found_nan["c"]), bool(s.found_nan["ok"])) == (
        True,
        True,
        False,
    )
    u, s = tx.update({"r": jnp.ones(3), "c": g["c"] * 0, "ok": g["ok"]}, s)
    assert not bool(s.found_nan["r"])  # the record is of the last step only


def test_periodic_update_keeps_old_dtypes_and_checks_structure():
    out = optix.periodic_update(jnp.ones(2, jnp.float32), jnp.zeros(2, jnp.bfloat16), 8, 4)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out.astype(jnp.float32), [1.0, 1.0])
    out = optix.periodic_update(jnp.ones(2), jnp.zeros(2), jnp.int32(9), 4)
    np.testing.assert_array_equal(out, [0.0, 0.0])
    with pytest.raises(ValueError, match="new_tensors"):
        optix.periodic_update({"a": jnp.ones(2)}, {"b": jnp.ones(2)}, 0, 1)


def test_per_example_clip_names_the_leaf_without_a_batch_axis():
    grads = {"a": jnp.ones((4, 2)), "b": jnp.ones((3,))}
    with pytest.raises(ValueError, match="'b'"):
        optix.per_example_global_norm_clip(grads, 1.0)
    with pytest.raises(ValueError, match="'s'"):
        optix.per_example_layer_norm_clip({"s": jnp.float32(1.0)}, 1.0)
    with pytest.raises(ValueError, match="l2_norm_clip"):
        optix.per_example_global_norm_clip(grads, -1.0)


def test_per_example_clip_bounds_each_example_and_keeps_dtypes():
    rng = np.random.default_rng(0)
    grads = {
        "w": jnp.asarray(rng.normal(size=(8, 3, 2)), jnp.bfloat16),
        "b": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32),
    }
    summed, n = jax.jit(optix.per_example_global_norm_clip)(grads, 0.5)
    assert summed["w"].dtype == jnp.bfloat16 and summed["w"].shape == (3, 2)
    assert summed["b"].dtype == jnp.float32 and n.dtype == jnp.int32
    assert int(n) == 8  # every example's norm is far above 0.5
    total = sum(float(jnp.sum(x.astype(jnp.float32) ** 2)) for x in summed.values()) ** 0.5
    assert total <= 8 * 0.5 * (1 + 1e-2)  # the sum of 8 vectors of norm 0.5
    summed, counts = optix.per_example_layer_norm_clip(grads, 0.0)
    for x in jax.tree.leaves(summed):
        np.testing.assert_array_equal(np.asarray(x, np.float32), 0.0)
    assert {int(c) for c in jax.tree.leaves(counts)} == {8}
