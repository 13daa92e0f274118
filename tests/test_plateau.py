"""reduce_on_plateau against a NumPy transcription of its rule, torch.optim's ReduceLROnPlateau
and optax.contrib.reduce_on_plateau, on loss curves with descents, plateaus and noise.

Values are multiples of 1/16, so every float32 sum is exact, and the NumPy reference checks that
none of its improvement tests is within 1e-6 (relative) of the threshold, 10 times the
float32 rounding of the transform's own comparison: the float32 transform and the
float64 references then take every decision the same way, and the scales agree to the float32
rounding of ``factor**n``: ``rtol=1e-5`` covers the up to 58 reductions these noisy curves trigger (each
rounds by up to 6e-8 relative; observed at most 1.6e-6).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from optix.wrappers._plateau import ReduceOnPlateauState
from optix.wrappers._plateau import reduce_on_plateau

torch = pytest.importorskip("torch")


def reference(values, factor, patience, cooldown, rtol, atol, min_scale, accumulation_size):
    """The rule, transcribed: the scale after each value, in float64."""
    scale, best, bad, cooling, window, out = 1.0, math.inf, 0, 0, [], []
    for v in values:
        window.append(float(v))
        if len(window) == accumulation_size:
            mean, window = sum(window) / accumulation_size, []
            margin = (rtol * abs(best) if math.isfinite(best) else 0.0) + atol
            threshold = best - margin
            assert abs(mean - threshold) > 1e-6 * max(1.0, abs(mean)), "borderline decision"
            if mean < threshold:
                best, bad = mean, 0
            else:
                bad += 1
            if cooling > 0:
                cooling, bad = cooling - 1, 0
            if bad >= patience:
                scale = min(scale, max(scale * factor, min_scale))
                cooling, bad = cooldown, 0
        out.append(scale)
    return np.array(out)


def curve(seed, n=240, offset=0.0):
    """A loss curve: fast descent, a long plateau, a second descent, noise; multiples of 1/16."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = 8 * np.exp(-t / 15) + 4 * (t < 150) + 2 * np.exp(-np.maximum(t - 150, 0) / 10) + 1
    noisy = base + 0.3 * rng.normal(size=n) * (rng.random(n) < 0.5)
    return np.round((noisy + offset) * 16) / 16


def run(values, **kwargs):
    """The transform's scale and update after each value (one jitted scan)."""
    tx = reduce_on_plateau(**kwargs)
    grads = {"w": jnp.ones(2)}

    def body(state, v):
        u, state = tx.update(grads, state, value=v)
        return state, (optix.get_hyperparams(state)["scale"], u["w"])

    state, (scales, updates) = jax.jit(lambda s, vs: jax.lax.scan(body, s, vs))(
        tx.init(grads), jnp.asarray(values, jnp.float32)
    )
    np.testing.assert_array_equal(updates, np.stack([scales, scales], axis=1))
    return np.asarray(scales), state


CONFIGS = {
    "default": dict(factor=0.1, patience=10),
    "patience3": dict(factor=0.5, patience=3),
    "cooldown": dict(factor=0.3, patience=2, cooldown=4),
    "atol_min_scale": dict(factor=0.5, patience=2, rtol=0.0, atol=0.3, min_scale=0.05),
    "accumulate3": dict(factor=0.5, patience=2, cooldown=1, accumulation_size=3),
    "accumulate4_rtol": dict(factor=0.7, patience=1, rtol=0.0123, accumulation_size=4),
}


def _full(kwargs):
    defaults = dict(factor=0.1, patience=10, cooldown=0, rtol=1e-4, atol=0.0, min_scale=0.0)
    return {**defaults, "accumulation_size": 1, **kwargs}


@pytest.mark.parametrize("offset", [0.0, -40.0, -6.0], ids=["positive", "negative", "crossing"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_the_numpy_transcription(name, offset):
    kwargs = CONFIGS[name]
    values = curve(seed=len(name), offset=offset)
    scales, _ = run(values, **kwargs)
    expected = reference(values, **_full(kwargs))
    assert expected[-1] < 1.0  # the curve does plateau under every config
    np.testing.assert_allclose(scales, expected, rtol=1e-5)


def test_negative_losses_use_the_absolute_best():
    # best -10; -9.9995 is worse, and must not count as an improvement (rtol * |best| = 1e-3)
    values = [-10.0, -9.9995, -9.9995, -9.9995]
    scales, state = run(values, factor=0.5, patience=2, rtol=1e-4)
    np.testing.assert_allclose(scales, [1.0, 1.0, 0.5, 0.5])
    assert float(state.best) == -10.0
    # torch's relative rule, best * (1 - threshold), counts each as better: no reduction
    assert torch_scales(values, factor=0.5, patience=1, threshold=1e-4, mode="rel")[-1] == 1.0


def torch_scales(values, factor, patience, threshold, mode, cooldown=0, min_lr=0.0):
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="min",
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=mode,
        cooldown=cooldown,
        min_lr=min_lr,
        eps=0.0,  # torch skips reductions smaller than eps (1e-8 by default); optix has no eps
    )
    out = []
    for v in values:
        opt.step()
        sched.step(float(v))
        out.append(opt.param_groups[0]["lr"])
    return np.array(out)


TORCH_CONFIGS = {
    # torch's patience p reduces on the (p+1)-th bad epoch: optix's patience p + 1
    "rel": (dict(factor=0.5, patience=2, threshold=1e-4, mode="rel"), dict(rtol=1e-4)),
    "rel_cooldown_min_lr": (
        dict(factor=0.3, patience=1, threshold=0.0123, mode="rel", cooldown=3, min_lr=0.01),
        dict(rtol=0.0123, cooldown=3, min_scale=0.01),
    ),
    "patience0": (
        dict(factor=0.5, patience=0, threshold=1e-4, mode="rel", min_lr=1e-6),
        dict(rtol=1e-4, min_scale=1e-6),
    ),
    "abs": (dict(factor=0.5, patience=3, threshold=0.3, mode="abs"), dict(rtol=0.0, atol=0.3)),
}


@pytest.mark.parametrize("name", list(TORCH_CONFIGS))
def test_matches_torch_reduce_lr_on_plateau(name):
    torch_kwargs, ours = TORCH_CONFIGS[name]
    # torch's relative rule coincides with optix's for positive losses only; its absolute rule
    # coincides for any sign, so that one also runs on negative losses.
    offsets = [0.0, -40.0] if torch_kwargs["mode"] == "abs" else [0.0]
    for offset in offsets:
        values = curve(seed=7, offset=offset)
        expected = torch_scales(values, **torch_kwargs)
        assert expected[-1] < 1.0
        kwargs = dict(ours, factor=torch_kwargs["factor"], patience=torch_kwargs["patience"] + 1)
        scales, _ = run(values, **kwargs)
        np.testing.assert_allclose(scales, expected, rtol=1e-5)
        np.testing.assert_allclose(expected, reference(values, **_full(kwargs)), rtol=1e-12)


OPTAX_CONFIGS = {
    "default": dict(factor=0.1, patience=10),
    "cooldown": dict(factor=0.3, patience=2, cooldown=4, min_scale=0.02),
    "atol": dict(factor=0.5, patience=2, rtol=0.0, atol=0.3),
    "accumulate3": dict(factor=0.5, patience=2, cooldown=1, accumulation_size=3),
}


@pytest.mark.parametrize("name", list(OPTAX_CONFIGS))
def test_matches_optax_contrib_reduce_on_plateau(name):
    # optax's threshold (1 - rtol) * best - atol equals optix's for positive losses
    kwargs = OPTAX_CONFIGS[name]
    values = curve(seed=11)
    tx = optax.contrib.reduce_on_plateau(**kwargs)
    grads = {"w": jnp.ones(2)}

    def body(state, v):
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 and float32 here
            u, state = tx.update(grads, state, value=v)
        return state, (state.scale, u["w"])

    _, (expected, updates) = jax.jit(lambda s, vs: jax.lax.scan(body, s, vs))(
        tx.init(grads), jnp.asarray(values, jnp.float32)
    )
    assert float(expected[-1]) < 1.0
    scales, _ = run(values, **kwargs)
    np.testing.assert_allclose(scales, expected, rtol=1e-5)
    np.testing.assert_allclose(updates, np.stack([expected, expected], axis=1), rtol=1e-6)


def test_in_a_chain_after_sgd_the_step_shrinks():
    kwargs = dict(factor=0.5, patience=2)
    tx = optix.chain(optix.sgd(0.1), reduce_on_plateau(**kwargs))
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    step = jax.jit(lambda p, s, v: tx.update(jax.tree.map(jnp.ones_like, p), s, p, value=v))
    values = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0]
    expected = reference(values, **_full(kwargs))
    steps = []
    for v, scale in zip(values, expected, strict=True):
        u, state = step(params, state, v)
        np.testing.assert_allclose(u["w"], -0.1 * scale, rtol=1e-6)
        steps.append(float(-u["w"][0]))
        params = optix.apply_updates(params, u)
    assert steps[0] == pytest.approx(0.1) and steps[-1] < steps[0] / 3
    hp = optix.get_hyperparams(state)
    assert float(hp["learning_rate"]) == pytest.approx(0.1)
    np.testing.assert_allclose(hp["scale"], expected[-1])


def test_scale_is_read_only_and_the_rest_settable():
    tx = reduce_on_plateau(factor=0.5, patience=1)
    state = tx.init({"w": jnp.zeros(2)})
    assert isinstance(state, ReduceOnPlateauState)
    hp = optix.get_hyperparams(state)
    assert sorted(hp) == ["atol", "factor", "min_scale", "rtol", "scale"]
    assert float(hp["scale"]) == 1.0 and float(hp["factor"]) == 0.5
    with pytest.raises(ValueError, match="scale"):
        optix.set_hyperparams(state, scale=0.5)
    state = optix.set_hyperparams(state, factor=0.25)
    step = jax.jit(lambda s, v: tx.update({"w": jnp.ones(2)}, s, value=v))
    for v in [1.0, 1.0]:
        u, state = step(state, v)
    np.testing.assert_allclose(u["w"], 0.25)
    assert float(optix.get_hyperparams(state)["scale"]) == 0.25


def test_jit_scan_dtypes_and_abstract_init():
    tx = reduce_on_plateau(patience=1)
    params = {"b": jnp.ones(2, jnp.bfloat16), "c": jnp.ones(2, jnp.complex64)}
    state = tx.init(params)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)

    def signature(tree):
        return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]

    assert signature(jax.eval_shape(tx.init, shapes)) == signature(state)

    def update(s, v):
        return tx.update(params, s, value=v)

    chex.clear_trace_counter()  # chex counts per definition site, shared across runs
    step = jax.jit(chex.assert_max_traces(update, n=1))
    for v in [2.0, 2.0, 2.0]:
        u, new = step(state, v)
        assert signature(new) == signature(state)
        state = new
    assert u["b"].dtype == jnp.bfloat16 and u["c"].dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(u["c"]), 0.01 * (1 + 0j), rtol=1e-6)
    # any real scalar works as the value, including a float64 NumPy one or an int
    jax.jit(update)(state, np.float32(1.0))  # a strongly typed scalar: a second trace, by design
    tx.update(params, state, value=3)
    # NumPy integer settings work under strict promotion too
    other = reduce_on_plateau(patience=np.int64(1), accumulation_size=np.int64(2))
    other.update(params, other.init(params), value=1.0)


def test_value_is_required_and_must_be_a_real_scalar():
    tx = reduce_on_plateau()
    state = tx.init({"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match="value=loss"):
        tx.update({"w": jnp.ones(2)}, state)
    with pytest.raises(ValueError, match="real scalar"):
        tx.update({"w": jnp.ones(2)}, state, value=jnp.ones(2))
    with pytest.raises(ValueError, match="real scalar"):
        tx.update({"w": jnp.ones(2)}, state, value=1j)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(factor=0.0), ValueError, "factor"),
        (dict(factor=1.0), ValueError, "factor"),
        (dict(factor=-0.5), ValueError, "factor"),
        (dict(factor=float("nan")), ValueError, "factor"),
        (dict(patience=0), ValueError, "patience"),
        (dict(patience=2.0), TypeError, "patience"),
        (dict(cooldown=-1), ValueError, "cooldown"),
        (dict(cooldown=1.5), TypeError, "cooldown"),
        (dict(accumulation_size=0), ValueError, "accumulation_size"),
        (dict(accumulation_size=True), TypeError, "accumulation_size"),
        (dict(rtol=-1e-4), ValueError, "rtol"),
        (dict(atol=-1.0), ValueError, "atol"),
        (dict(min_scale=-0.1), ValueError, "min_scale"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, error, name):
    with pytest.raises(error, match=name):
        reduce_on_plateau(**kwargs)
