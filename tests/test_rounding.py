"""stochastic_rounding and kahan_summation: low-precision params that keep learning from updates
below half an ulp, with exact bookkeeping through apply_updates."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import optix
from optix.wrappers._rounding import stochastic_round

BF16 = jnp.bfloat16
F16 = jnp.float16


def _ulp(value: float, dtype) -> float:
    """The spacing of ``dtype`` values just above ``|value|`` (value representable in dtype)."""
    v = jnp.asarray(abs(value), dtype)
    return float(jnp.nextafter(v, jnp.asarray(jnp.inf, dtype)).astype(jnp.float32)) - float(
        v.astype(jnp.float32)
    )


def _bits(seed, shape):
    return jax.random.bits(jax.random.PRNGKey(seed), shape, jnp.uint32)


def _f64(x):
    return np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)


# --- the rounding itself -------------------------------------------------------------------------

_VALUES = [
    1.001,
    -1.001,
    0.3,
    -0.3,
    1.999,  # just below a power of two: the neighbours are 2 and 2 - ulp
    -1.999,
    2.0001,  # just above one: the spacing doubles
    -2.0001,
    0.2500001,
    1e-3,
    -7.77e3,
]


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("value", _VALUES)
def test_stochastic_round_is_unbiased(dtype, value):
    n = 200_000
    x = jnp.full((n,), value, jnp.float32)
    r = _f64(stochastic_round(x, dtype, _bits(1, (n,))))
    exact = float(x[0])
    lo, hi = r.min(), r.max()
    assert lo <= exact <= hi and len(np.unique(r)) == 2  # only the two neighbours occur
    q = (exact - lo) / (hi - lo)
    stderr = (hi - lo) * np.sqrt(q * (1 - q) / n)
    assert abs(r.mean() - exact) < 3 * stderr, (r.mean(), exact, stderr)


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bfloat16", "float16"])
def test_stochastic_round_edge_values(dtype):
    info = jnp.finfo(dtype)
    big = float(info.max)
    ulp = _ulp(float(jnp.nextafter(jnp.asarray(big, dtype), jnp.asarray(0, dtype))), dtype)
    x = jnp.array(
        [1.0, -2.5, 0.0, -0.0, jnp.inf, -jnp.inf, jnp.nan, big + 0.4 * ulp, -(big + 0.6 * ulp)],
        jnp.float32,
    )
    for seed in range(5):
        r = stochastic_round(x, dtype, _bits(seed, x.shape))
        assert r.dtype == dtype
        np.testing.assert_array_equal(_f64(r[:6]), [1.0, -2.5, 0.0, 0.0, np.inf, -np.inf])
        assert bool(jnp.signbit(r[3]))  # -0 stays -0
        assert bool(jnp.isnan(r[6]))
        # beyond the range: to +-max below max + ulp/2, to +-inf from there (as nearest does)
        assert float(r[7]) == big and float(r[8]) == -np.inf


# --- stochastic_rounding: exactness through apply_updates ----------------------------------------


def _draws(state, n_leaves):
    """The bits each leaf draws at this step (the documented scheme: one split, folded per leaf)."""
    _, draw = jax.random.split(state.key)
    return [
        lambda shape, i=i: jax.random.bits(jax.random.fold_in(draw, i), shape, jnp.uint32)
        for i in range(n_leaves)
    ]


def _random_params(dtype, n, seed):
    rng = np.random.default_rng(seed)
    decades = 6 if dtype == BF16 else 4  # float16 spans 6e-8 to 65504
    mag = 10.0 ** rng.uniform(-decades, decades, n)
    return jnp.asarray(mag * rng.choice([-1.0, 1.0], n), dtype)


@pytest.mark.parametrize(
    ("param_dtype", "grad_dtype", "low", "high"),
    [
        (BF16, BF16, -0.5, 0.5),  # |u| <= |p| / 2: r - p is exact in bf16 (Sterbenz)
        (F16, F16, -0.5, 0.5),
        (BF16, jnp.float32, -0.9, 100.0),  # float32 updates: r and p within 2^15 of each other
    ],
)
def test_stochastic_rounding_delta_lands_exactly_on_the_rounded_value(
    param_dtype, grad_dtype, low, high
):
    n = 4096
    params = _random_params(param_dtype, n, 0)
    ratio = np.random.default_rng(1).uniform(low, high, n)
    grads = jnp.asarray(-_f64(params) * ratio, grad_dtype)  # sgd(1.0): u = -g = ratio * p
    tx = optix.stochastic_rounding(optix.sgd(1.0), seed=3)
    state = tx.init(params)
    updates, _ = tx.update(grads, state, params)
    assert updates.dtype == grad_dtype
    x = params.astype(jnp.float32) + (-grads).astype(jnp.float32)
    (bits,) = _draws(state, 1)
    expected = stochastic_round(x, param_dtype, bits((n,)))
    got = optix.apply_updates(params, updates)
    np.testing.assert_array_equal(
        np.asarray(jax.lax.bitcast_convert_type(got, jnp.uint16)),
        np.asarray(jax.lax.bitcast_convert_type(expected, jnp.uint16)),
    )


def test_stochastic_rounding_far_jumps_in_bf16_land_within_one_ulp():
    # bf16 updates that move a param by more than itself: r - p may not be a bf16 value, and the
    # param lands on the rounded difference, within one ulp of the stochastically rounded value
    n = 4096
    params = _random_params(BF16, n, 2)
    ratio = np.random.default_rng(3).uniform(-100.0, 100.0, n)
    grads = jnp.asarray(-_f64(params) * ratio, BF16)
    tx = optix.stochastic_rounding(optix.sgd(1.0), seed=4)
    state = tx.init(params)
    updates, _ = tx.update(grads, state, params)
    x = params.astype(jnp.float32) + (-grads).astype(jnp.float32)
    (bits,) = _draws(state, 1)
    expected = _f64(stochastic_round(x, BF16, bits((n,))))
    got = _f64(optix.apply_updates(params, updates))
    ulp = np.abs(expected) * 2.0**-7
    assert np.all(np.abs(got - expected) <= ulp)
    # the pathological case of the docs: from p = 2^-8, 1 + 2^-7 is unreachable with bf16 updates
    p = jnp.asarray(2.0**-8, BF16)
    target = jnp.asarray(1 + 2.0**-7, BF16)
    reachable = {
        float(optix.apply_updates(p, d))
        for d in [
            jnp.asarray(target.astype(jnp.float32) - p.astype(jnp.float32), BF16),
            jnp.nextafter(jnp.asarray(1.0, BF16), jnp.asarray(2.0, BF16)),
        ]
    }
    assert float(target) not in reachable


def test_stochastic_rounding_is_unbiased_through_apply_updates():
    # a step of 1e-3 from 1 in bf16 (spacing below 1 is 2^-8): nearest never moves; stochastic
    # rounding moves a quarter of the params down one step, so the mean is 1 - 1e-3
    n = 100_000
    params = jnp.ones(n, BF16)
    grads = jnp.ones(n, BF16)
    plain = optix.sgd(1e-3)
    updates, _ = plain.update(grads, plain.init(params), params)
    assert bool(jnp.all(optix.apply_updates(params, updates) == 1))
    tx = optix.stochastic_rounding(optix.sgd(1e-3), seed=0)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = _f64(optix.apply_updates(params, updates))
    exact = 1.0 + float(jnp.asarray(-1e-3, BF16).astype(jnp.float32))
    q = (1.0 - exact) / 2.0**-8
    stderr = 2.0**-8 * np.sqrt(q * (1 - q) / n)
    assert abs(new.mean() - exact) < 3 * stderr


def test_stochastic_rounding_leaves_float32_params_alone():
    params = {"low": jnp.ones(4, BF16), "full": jnp.ones(4, jnp.float32)}
    grads = {"low": jnp.ones(4, BF16), "full": jnp.ones(4, jnp.float32)}
    tx = optix.stochastic_rounding(optix.adam(1e-3))
    ref = optix.adam(1e-3)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected, _ = ref.update(grads, ref.init(params), params)
    np.testing.assert_array_equal(updates["full"], expected["full"])
    assert updates["low"].dtype == BF16


# --- kahan_summation -----------------------------------------------------------------------------


def _run_scan(tx, params, grads, steps):
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(grads, state, params)
        return (optix.apply_updates(params, updates), state), None

    (params, state), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))(
        (params, tx.init(params))
    )
    return params, state


@pytest.mark.parametrize("grad_dtype", [BF16, jnp.float32], ids=["bf16_grads", "f32_grads"])
@pytest.mark.parametrize("compensation_dtype", [None, BF16], ids=["f32_buffer", "bf16_buffer"])
def test_kahan_summation_recovers_small_updates(grad_dtype, compensation_dtype):
    steps = 1000
    start = np.array([1.0, -3.0, 0.37, 100.0, -0.0123], np.float64)
    params = jnp.asarray(start, BF16)
    grads = jnp.asarray(np.abs(start) * 1e-4, grad_dtype)  # each step 1e-4 of the param: < ulp/2
    stuck, _ = _run_scan(optix.sgd(1.0), params, grads, steps)
    np.testing.assert_array_equal(_f64(stuck), _f64(params))  # nearest rounding never moves
    tx = optix.kahan_summation(optix.sgd(1.0), compensation_dtype=compensation_dtype)
    got, state = _run_scan(tx, params, grads, steps)
    u = -np.asarray(grads.astype(jnp.float32), np.float64)  # the update, as sgd emits it
    exact = _f64(params) + steps * u
    ulp = np.array([_ulp(float(v), BF16) for v in np.asarray(got.astype(jnp.float32))])
    assert np.all(np.abs(_f64(got) - exact) <= ulp), (_f64(got), exact)
    expected_dtype = jnp.float32 if compensation_dtype is None else BF16
    assert state.compensation.dtype == expected_dtype


def test_kahan_summation_delta_lands_exactly_and_keeps_the_remainder():
    n = 4096
    params = _random_params(BF16, n, 5)
    start = _f64(params)
    ratio = np.random.default_rng(6).uniform(-0.01, 0.01, n)
    grads = jnp.asarray(-start * ratio, jnp.float32)
    u = -np.asarray(grads, np.float64)
    tx = optix.kahan_summation(optix.sgd(1.0))
    state = tx.init(params)
    for _ in range(3):
        c = np.asarray(state.compensation, np.float64)
        updates, state = tx.update(grads, state, params)
        assert updates.dtype == jnp.float32
        new = optix.apply_updates(params, updates)
        # the param is p + u + c rounded to nearest; the remainder is what was left out, stored
        # in float32 (one rounding of the remainder itself, when it needs more than 24 bits)
        y = jnp.asarray(u + c, jnp.float32)  # u + c is exact in float64, rounded once here
        want = (params.astype(jnp.float32) + y).astype(BF16)
        np.testing.assert_array_equal(_f64(new), _f64(want))
        left = np.asarray(y, np.float64) - (_f64(new) - _f64(params))
        np.testing.assert_allclose(np.asarray(state.compensation, np.float64), left, rtol=2**-24)
        params = new
    total = _f64(params) + np.asarray(state.compensation, np.float64)
    np.testing.assert_allclose(total, start + 3 * u, rtol=1e-6)


def test_kahan_summation_resets_a_nonfinite_remainder():
    params = jnp.ones(3, BF16)
    tx = optix.kahan_summation(optix.sgd(1.0))
    state = tx.init(params)
    _, state = tx.update(jnp.array([jnp.nan, jnp.inf, 1e-4], BF16), state, params)
    c = np.asarray(state.compensation)
    assert c[0] == 0 and c[1] == 0 and np.isfinite(c[2]) and c[2] != 0


# --- where users meet them -----------------------------------------------------------------------

_WRAPS = {
    "stochastic_rounding": lambda tx: optix.stochastic_rounding(tx, seed=7),
    "kahan_summation": optix.kahan_summation,
    "kahan_summation_bf16": lambda tx: optix.kahan_summation(tx, compensation_dtype=BF16),
}


def _params(dtype=BF16):
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 4)), dtype),
        "b": jnp.asarray(rng.normal(size=4), dtype),
        "scale": jnp.ones((), jnp.float32),
    }


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


@pytest.mark.parametrize("wrap", list(_WRAPS))
def test_errors_name_the_wrapper(wrap):
    name = wrap.removesuffix("_bf16")
    tx = _WRAPS[wrap](optix.adamw(1e-3))
    params = _params()
    state = tx.init(params)
    with pytest.raises(ValueError, match=f"`{name}` needs the current parameters"):
        tx.update(_grads(params, 0), state)
    with pytest.raises(TypeError, match="gradient transformation"):
        _WRAPS[wrap](optix.adamw)
    with pytest.raises(TypeError, match=f"`{name}` params"):
        tx.init({"n": jnp.zeros(2, jnp.int32)})


def test_constructor_arguments_are_checked():
    with pytest.raises(TypeError, match="compensation_dtype"):
        optix.kahan_summation(optix.sgd(0.1), compensation_dtype=jnp.int32)
    with pytest.raises(TypeError, match="seed"):
        optix.stochastic_rounding(optix.sgd(0.1), seed=1.5)


def test_stochastic_rounding_is_reproducible_from_its_seed_and_state():
    params = _params()

    def run(seed, steps, state=None, p=params):
        tx = optix.stochastic_rounding(optix.adamw(1e-3), seed=seed)
        state = tx.init(p) if state is None else state
        for i in range(steps):
            updates, state = tx.update(_grads(p, i), state, p)
            p = optix.apply_updates(p, updates)
        return p, state

    a, state_a = run(0, 4)
    b, _ = run(0, 4)
    c, _ = run(1, 4)
    chex.assert_trees_all_equal(a, b)
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(c), strict=True)
    assert not all(np.array_equal(x, y) for x, y in pairs)
    # the key lives in the state: two steps, then two more from that state, is four steps
    mid, state_mid = run(0, 2)
    tx = optix.stochastic_rounding(optix.adamw(1e-3), seed=0)
    p = mid
    for i in range(2, 4):
        updates, state_mid = tx.update(_grads(p, i), state_mid, p)
        p = optix.apply_updates(p, updates)
    chex.assert_trees_all_equal(p, a)
    chex.assert_trees_all_equal(state_mid, state_a)
    # the key advances every step
    assert not np.array_equal(
        state_a.key, optix.stochastic_rounding(optix.sgd(0.1)).init(params).key
    )


@pytest.mark.parametrize("wrap", list(_WRAPS))
def test_jit_second_step_does_not_retrace_and_hyperparams_reach_the_inner(wrap):
    tx = _WRAPS[wrap](optix.adamw(1e-3))
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state, updates

    params = _params()
    state = tx.init(params)
    for seed in range(3):
        new, state, updates = step(params, state, _grads(params, seed))
        chex.assert_trees_all_equal_dtypes(updates, params)
        chex.assert_trees_all_equal_dtypes(new, params)
        params = new
    assert "learning_rate" in optix.get_hyperparams(state)
    state = optix.set_hyperparams(state, learning_rate=1e-2)
    params, state, _ = step(params, state, _grads(params, 9))
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(1e-2)


@pytest.mark.parametrize("wrap", list(_WRAPS))
def test_donating_jit_step(wrap):
    tx = _WRAPS[wrap](optix.adamw(1e-3))

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state

    donating = jax.jit(step, donate_argnums=(0, 1))
    params = _params()
    state = tx.init(params)
    for seed in range(3):
        old = jax.tree.leaves(params)
        params, state = donating(params, state, _grads(params, seed))
        assert all(x.is_deleted() for x in old)
    # a donated state does not take the factory's own arrays with it
    again = tx.init(_params())
    assert all(not x.is_deleted() for x in jax.tree.leaves(again))
    for x in jax.tree.leaves(params):
        assert bool(jnp.all(jnp.isfinite(x)))


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layer = nnx.Linear(2, 3, rngs=rngs, param_dtype=BF16, dtype=BF16)

    def __call__(self, x):
        return self.layer(x)


def _nnx_loss(model):
    x = jnp.linspace(-1.0, 1.0, 10, dtype=BF16).reshape(5, 2)
    return jnp.mean((model(x).astype(jnp.float32) - 1.0) ** 2)


@pytest.mark.parametrize("wrap", list(_WRAPS))
def test_nnx_optimizer_under_nnx_jit_matches_a_manual_step(wrap):
    tx = _WRAPS[wrap](optix.adamw(1e-3))
    model, manual = _Net(nnx.Rngs(0)), _Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    chex.clear_trace_counter()

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def train_step(model, optimizer):
        optimizer.update(model, nnx.grad(_nnx_loss)(model))

    params = nnx.as_pure(nnx.state(manual, nnx.Param))
    opt_state = tx.init(params)
    for _ in range(3):
        train_step(model, optimizer)
        grads = nnx.as_pure(nnx.state(nnx.grad(_nnx_loss)(manual), nnx.Param))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optix.apply_updates(params, updates)
        nnx.update(manual, params)
    got = jax.tree.leaves(nnx.as_pure(nnx.state(model, nnx.Param)))
    want = jax.tree.leaves(nnx.as_pure(nnx.state(manual, nnx.Param)))
    for a, b in zip(got, want, strict=True):
        assert a.dtype == BF16
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("wrap", list(_WRAPS))
def test_orbax_round_trip_resumes_bitwise(wrap, tmp_path):
    tx = _WRAPS[wrap](optix.adamw(1e-3))
    step = jax.jit(lambda p, s, g: tx.update(g, s, p))

    def run(params, state, seeds):
        for seed in seeds:
            updates, state = step(params, state, _grads(params, seed))
            params = optix.apply_updates(params, updates)
        return params, state

    params, state = run(_params(), tx.init(_params()), range(3))
    target = {"params": jax.eval_shape(lambda: params), "state": jax.eval_shape(tx.init, params)}
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", {"params": params, "state": state})
        ckpt.wait_until_finished()
        restored = ckpt.restore(tmp_path / "ckpt", target)
    chex.assert_trees_all_equal(restored, {"params": params, "state": state})
    optix.check_state(tx, restored["state"], restored["params"])
    expected = run(params, state, range(3, 7))
    resumed = run(restored["params"], restored["state"], range(3, 7))
    chex.assert_trees_all_equal(resumed, expected)
