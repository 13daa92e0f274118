"""Hyperparameters live in state: readable, settable, float32, sweepable, never recompiling."""

from __future__ import annotations

import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.cases import CASES

PARAMS = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
GRADS = {"w": jnp.full((2, 3), 0.5, jnp.float32), "b": jnp.full(3, -1.0, jnp.float32)}


def test_get_reads_every_hyperparameter_of_an_optimizer():
    state = optix.adamw(3e-4, b1=0.8, b2=0.95, eps=1e-6, weight_decay=0.1).init(PARAMS)
    hp = optix.get_hyperparams(state)
    assert set(hp) == {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}
    expected = {"learning_rate": 3e-4, "b1": 0.8, "b2": 0.95, "eps": 1e-6, "weight_decay": 0.1}
    for name, value in expected.items():
        assert hp[name].dtype == jnp.float32
        assert float(hp[name]) == pytest.approx(value, rel=1e-7)


def test_set_changes_the_step_and_nothing_else():
    tx = optix.sgd(0.1)
    state = optix.set_hyperparams(tx.init(PARAMS), learning_rate=0.01)
    updates, _ = tx.update(GRADS, state)
    np.testing.assert_allclose(updates["w"], -0.01 * GRADS["w"], rtol=1e-6)
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.01)


def test_changing_the_learning_rate_does_not_recompile():
    tx = optix.adam(1e-3)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        updates, state = tx.update(GRADS, state, params)
        return optix.apply_updates(params, updates), state

    params, state = PARAMS, tx.init(PARAMS)
    for lr in [1e-3, 5e-4, 1e-4, 0.0]:
        state = optix.set_hyperparams(state, learning_rate=lr, b1=0.5)
        new_params, state = step(params, state)
    # the last rate was 0: params must not move
    np.testing.assert_array_equal(new_params["w"], params["w"])


def test_low_precision_params_keep_float32_hyperparameters():
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    state = optix.adam(1e-3, b2=0.999).init(params)
    hp = optix.get_hyperparams(state)
    assert all(v.dtype == jnp.float32 for v in hp.values())
    assert float(hp["b2"]) == pytest.approx(0.999, rel=1e-7)  # bf16 would round it to 1.0
    state = optix.set_hyperparams(state, b2=0.9995)
    assert float(optix.get_hyperparams(state)["b2"]) < 1.0


def test_ambiguous_names_are_keyed_and_addressed_by_path():
    tx = optix.named_chain(("encoder", optix.sgd(0.1)), ("head", optix.adam(1e-3)))
    state = tx.init(PARAMS)
    hp = optix.get_hyperparams(state)
    assert float(hp["encoder/0/learning_rate"]) == pytest.approx(0.1)
    assert float(hp["head/1/learning_rate"]) == pytest.approx(1e-3)
    assert "b1" in hp  # unique names stay short
    with pytest.raises(ValueError, match="ambiguous.*encoder/0/learning_rate"):
        optix.set_hyperparams(state, learning_rate=1.0)
    state = optix.set_hyperparams(state, **{"encoder/learning_rate": 0.5})
    hp = optix.get_hyperparams(state)
    assert float(hp["encoder/0/learning_rate"]) == pytest.approx(0.5)
    assert float(hp["head/1/learning_rate"]) == pytest.approx(1e-3)


def test_unknown_name_lists_the_known_ones():
    state = optix.sgd(0.1).init(PARAMS)
    with pytest.raises(ValueError, match="no hyperparameter 'lr'.*learning_rate"):
        optix.set_hyperparams(state, lr=0.1)


def test_schedule_value_is_readable_and_read_only():
    sched = optix.schedules.linear(1.0, 0.0, 10)
    tx = optix.sgd(sched)
    state = tx.init(PARAMS)
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(1.0)
    for k in range(3):
        updates, state = tx.update(GRADS, state)
        np.testing.assert_allclose(updates["b"], -float(sched(k)) * GRADS["b"], rtol=1e-6)
        assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(sched(k))
    with pytest.raises(ValueError, match="schedule"):
        optix.set_hyperparams(state, learning_rate=0.1)


def test_set_validates_values_and_shapes():
    state = optix.adam(1e-3).init(PARAMS)
    with pytest.raises(ValueError, match="learning_rate"):
        optix.set_hyperparams(state, learning_rate=-1.0)
    with pytest.raises(ValueError, match="b1"):
        optix.set_hyperparams(state, b1=1.0)
    with pytest.raises(ValueError, match="shape"):
        optix.set_hyperparams(state, learning_rate=jnp.ones(3))


def test_vmap_over_states_sweeps_learning_rates_in_one_compiled_step():
    tx = optix.adam(1e-3)
    rates = jnp.array([1e-3, 1e-2, 1e-1], jnp.float32)
    states = jax.vmap(lambda lr: optix.set_hyperparams(tx.init(PARAMS), learning_rate=lr))(rates)
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @jax.vmap
    @chex.assert_max_traces(n=1)
    def step(state):
        return tx.update(GRADS, state, PARAMS)

    for _ in range(3):
        updates, states = step(states)
    # Adam's first steps have magnitude ~lr, so the sweep must scale exactly with the rate
    ratio = updates["w"][2] / updates["w"][0]
    np.testing.assert_allclose(ratio, 100.0, rtol=1e-4)


def test_hyperparameters_are_found_inside_optax_and_nested_containers():
    optax = pytest.importorskip("optax")
    tx = optix.chain(optax.scale_by_adam(), optix.clip_by_global_norm(1.0), optix.scale_lr(0.1))
    state = {"outer": [tx.init(PARAMS)]}
    hp = optix.get_hyperparams(state)
    assert set(hp) == {"max_norm", "learning_rate"}


def test_range_checks_follow_the_owning_transform():
    """``factor`` is any number for ``scale`` but in (0, 1) for ``reduce_on_plateau``."""
    tx = optix.named_chain(s=optix.scale(2.0), plateau=optix.reduce_on_plateau(factor=0.5))
    state = tx.init(PARAMS)
    state = optix.set_hyperparams(state, **{"s/factor": 3.0})
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        optix.set_hyperparams(state, **{"plateau/factor": 2.0})
    state = optix.set_hyperparams(state, **{"plateau/factor": 0.25})
    assert float(optix.get_hyperparams(state)["plateau/factor"]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="slow_step_size"):
        optix.set_hyperparams(
            optix.lookahead(optix.sgd(0.1), 5, 0.5).init(PARAMS), slow_step_size=2
        )


def _scheduled_adamw():
    schedule = optix.schedules.warmup_cosine_decay(0.0, 1e-2, 3, 30)
    return optix.adamw(schedule, weight_decay=0.1)


def test_a_scheduled_learning_rate_is_rescaled_mid_run_without_recompiling():
    tx = _scheduled_adamw()
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state):
        return tx.update(GRADS, state, PARAMS)

    state = tx.init(PARAMS)
    assert float(optix.get_hyperparams(state)["learning_rate_scale"]) == 1.0
    for _ in range(4):
        _, state = step(state)
    plain, plain_state = step(state)
    scaled, scaled_state = step(optix.set_hyperparams(state, learning_rate_scale=0.25))
    for name in PARAMS:  # the whole step, decoupled decay included, is scaled by the factor
        np.testing.assert_allclose(scaled[name], 0.25 * plain[name], rtol=1e-6)
    # the factor stays until it is set again, and the schedule goes on underneath it
    hp, plain_hp = optix.get_hyperparams(scaled_state), optix.get_hyperparams(plain_state)
    assert float(hp["learning_rate"]) == pytest.approx(0.25 * float(plain_hp["learning_rate"]))
    np.testing.assert_array_equal(
        optix.state_get(scaled_state, "mu")["w"], optix.state_get(plain_state, "mu")["w"]
    )
    again, _ = step(scaled_state)
    reference, _ = step(plain_state)
    np.testing.assert_allclose(again["w"], 0.25 * reference["w"], rtol=1e-6)


def test_setting_a_scheduled_value_says_how_to_rescale_it():
    state = _scheduled_adamw().init(PARAMS)
    with pytest.raises(ValueError, match="schedule.*set '2/learning_rate_scale'"):
        optix.set_hyperparams(state, learning_rate=1e-3)
    with pytest.raises(ValueError, match="`learning_rate_scale` must be a finite number >= 0"):
        optix.set_hyperparams(state, learning_rate_scale=-1.0)
    with pytest.raises(TypeError, match="cannot take a schedule"):
        optix.set_hyperparams(state, learning_rate_scale=lambda step: 1.0)


def test_only_scheduled_hyperparameters_get_a_scale():
    """State structures of optimizers without schedules are unchanged."""
    hp = optix.get_hyperparams(optix.adamw(1e-3, b1=optix.schedules.constant(0.9)).init(PARAMS))
    assert set(hp) == {"learning_rate", "b1", "b1_scale", "b2", "eps", "eps_root", "weight_decay"}
    assert not any(
        k.endswith("_scale") for k in optix.get_hyperparams(optix.adam(1e-3).init(PARAMS))
    )


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"learning_rate": True}, TypeError, "`learning_rate` must be a real number, not a bool"),
        ({"learning_rate": "1e-3"}, TypeError, "`learning_rate` must be a real number"),
        ({"learning_rate": None}, TypeError, "`learning_rate` must be a real number"),
        ({"eps": 1j}, ValueError, "`eps` must be a real number"),
        ({"b1": 0.99999999}, ValueError, "`b1` must be in .*rounds to 1.0 in float32"),
        ({"b2": np.float64(1 - 1e-10)}, ValueError, "`b2` must be in .*rounds to 1.0"),
        ({"learning_rate": jnp.array([1e-3])}, ValueError, "`learning_rate` must be a scalar"),
        ({"learning_rate": jnp.array(-1e-3)}, ValueError, "`learning_rate` must be a finite"),
    ],
)
def test_set_refuses_what_construction_refuses(values, error, match):
    state = optix.adam(1e-3).init(PARAMS)
    with pytest.raises(error, match=match):
        optix.set_hyperparams(state, **values)


def test_set_checks_the_value_in_the_dtype_of_the_state():
    """A float32 state set while x64 is on still keeps float32: 0.99999999 would be 1.0 there."""
    state = optix.adam(1e-3).init(PARAMS)
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="`b1` must be in .*rounds to 1.0 in float32"):
            optix.set_hyperparams(state, b1=0.99999999)
        wide = optix.adam(1e-3).init(jax.tree.map(lambda x: x.astype(jnp.float64), PARAMS))
        wide = optix.set_hyperparams(wide, b1=0.99999999)
        assert optix.get_hyperparams(wide)["b1"].dtype == jnp.float64
        assert float(optix.get_hyperparams(wide)["b1"]) < 1.0


_PROBES = [-1.0, -1e-3, 0.0, 0.5, 0.99999999, 1.0, 1.5, 1e39, math.inf, math.nan, True, "0.1"]


def _refused(fn, *args, **kwargs) -> bool:
    try:
        fn(*args, **kwargs)
    except (ValueError, TypeError):
        return True
    return False


def _build(case, params, **kwargs):
    return case.make(**kwargs).init(params)


@pytest.mark.parametrize(
    # nesterov's `dampening == 0` and `momentum > 0` depend on a flag that is not in the state
    "case",
    [c for c in CASES if not c.kwargs.get("nesterov")],
    ids=lambda c: c.name,
)
def test_set_applies_the_checks_construction_applies(case):
    """For every hyperparameter an optimizer takes as an argument of the same name, a probe value
    is refused by ``set_hyperparams`` exactly when building the optimizer with it is refused."""
    params = {"w": jnp.ones((2, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    arguments = inspect.signature(case.factory).parameters
    state = case.make().init(params)
    for key in optix.get_hyperparams(state):
        name = key.split("/")[-1]
        if name not in arguments or isinstance(arguments[name].default, tuple | str):
            continue  # not an argument, or one that takes more than the value (dog's init_step)
        if _refused(optix.set_hyperparams, state, **{key: 0.5}):
            continue  # a scheduled value: read-only
        for value in _PROBES:
            built = _refused(_build, case, params, **{name: value})
            changed = _refused(optix.set_hyperparams, state, **{key: value})
            assert built == changed, (case.name, key, value, built, changed)


@pytest.mark.parametrize(
    "make, name, bad",
    [
        (lambda: optix.adan(1e-3), "b3", 1.0),
        (lambda: optix.ademamix(1e-3), "b3", 1.5),
        (lambda: optix.ademamix(1e-3), "alpha", -2.0),
        (lambda: optix.signum(1e-3), "beta", 1.0),
        (lambda: optix.rprop(0.1), "eta_plus", 0.9),
        (lambda: optix.rprop(0.1), "eta_minus", 1.1),
        (lambda: optix.rprop(0.1), "max_step_size", 0.0),
    ],
)
def test_set_hyperparams_range_checks_new_names(make, name, bad):
    state = make().init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match=name):
        optix.set_hyperparams(state, {name: bad})


def test_hyperparameters_live_in_state():
    params = {"w": jnp.zeros(3)}
    expected = {
        optix.adabelief: {"learning_rate", "b1", "b2", "eps", "eps_root"},
        optix.yogi: {"learning_rate", "b1", "b2", "eps", "eps_root"},
        optix.adopt: {"learning_rate", "b1", "b2", "eps", "clip_value"},
        optix.ademamix: {"learning_rate", "b1", "b2", "b3", "alpha", "eps", "eps_root"},
        optix.adan: {"learning_rate", "b1", "b2", "b3", "eps", "eps_root"},
        optix.lion: {"learning_rate", "b1", "b2", "weight_decay"},
        optix.signum: {"learning_rate", "beta"},
        optix.rprop: {
            "learning_rate",
            "eta_minus",
            "eta_plus",
            "min_step_size",
            "max_step_size",
        },
    }
    for factory, names in expected.items():
        found = set(optix.get_hyperparams(factory(1e-2).init(params)))
        assert names <= found, (factory.__name__, found)


def test_a_whole_path_addresses_a_wrappers_own_hyperparameter():
    """``mars`` keeps a ``b1`` of its own around Adam's ``b1``: ``"b1"`` is the wrapper's (its
    whole path), ``"inner_state/b1"`` the inner one's; both stay reachable."""
    state = optix.mars(optix.adam(1e-3), b1=0.9).init({"w": jnp.zeros(2)})
    state = optix.set_hyperparams(state, b1=0.5)
    state = optix.set_hyperparams(state, {"inner_state/b1": 0.8})
    values = optix.get_hyperparams(state)
    assert float(values["b1"]) == 0.5
    inner = [k for k in values if k.endswith("/b1")]
    assert len(inner) == 1 and float(values[inner[0]]) == pytest.approx(0.8)
