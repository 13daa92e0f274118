"""Bad input gets a clear error, raised early, naming the argument or the tree path."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix

PARAMS = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda v: optix.sgd(v), "learning_rate"),
        (lambda v: optix.adam(v), "learning_rate"),
        (lambda v: optix.scale_lr(v), "learning_rate"),
        (lambda v: optix.adam(1e-3, eps=v), "eps"),
        (lambda v: optix.rmsprop(1e-3, eps=v), "eps"),
        (lambda v: optix.adagrad(1e-3, eps=v), "eps"),
        (lambda v: optix.adamw(1e-3, weight_decay=v), "weight_decay"),
        (lambda v: optix.clip_by_global_norm(v), "max_norm"),
        (lambda v: optix.clip(v), "max_delta"),
        (lambda v: optix.noisy_sgd(0.1, eta=v), "eta"),
    ],
)
@pytest.mark.parametrize("bad", [-1e-3, math.nan, math.inf])
def test_negative_or_nan_nonnegative_hyperparameters(make, argument, bad):
    with pytest.raises(ValueError, match=f"`{argument}` must be"):
        make(bad)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda v: optix.adam(1e-3, b1=v), "b1"),
        (lambda v: optix.adam(1e-3, b2=v), "b2"),
        (lambda v: optix.adamw(1e-3, b2=v), "b2"),
        (lambda v: optix.nadam(1e-3, b1=v), "b1"),
        (lambda v: optix.radam(1e-3, b2=v), "b2"),
        (lambda v: optix.adamax(1e-3, b1=v), "b1"),
        (lambda v: optix.rmsprop(1e-3, decay=v), "decay"),
        (lambda v: optix.adadelta(1.0, rho=v), "rho"),
        (lambda v: optix.sgd(0.1, momentum=v), "momentum"),
        (lambda v: optix.scale_by_momentum(v), "momentum"),
    ],
)
@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, math.nan])
def test_decays_outside_unit_interval(make, argument, bad):
    with pytest.raises(ValueError, match=rf"`{argument}` must be in \[0, 1\)"):
        make(bad)


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="momentum"):
        optix.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match="dampening"):
        optix.sgd(0.1, momentum=0.9, nesterov=True, dampening=0.1)


def test_traced_hyperparameters_are_accepted():
    """Inside jit a hyperparameter may be a tracer: it cannot be checked, and must not fail."""

    @jax.jit
    def step(lr):
        tx = optix.adam(lr)
        return tx.update(PARAMS, tx.init(PARAMS))[0]

    assert step(jnp.float32(1e-3))["w"].shape == (2, 3)


@pytest.mark.parametrize(
    "tx",
    [optix.adam(1e-3), optix.sgd(0.1, momentum=0.9), optix.rmsprop(1e-3), optix.adagrad(0.1)],
)
def test_updates_with_another_structure_name_the_path(tx):
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="'extra' is in updates but not in the"):
        tx.update({**PARAMS, "extra": jnp.ones(1)}, state, PARAMS)
    with pytest.raises(ValueError, match="'b' is in the .* state but not in updates"):
        tx.update({"w": PARAMS["w"]}, state, PARAMS)


def test_apply_updates_with_another_structure_names_the_path():
    with pytest.raises(ValueError, match="'b' is in params but not in updates"):
        optix.apply_updates(PARAMS, {"w": PARAMS["w"]})


@pytest.mark.parametrize(
    "tx", [optix.adamw(1e-3), optix.sgd(0.1, weight_decay=1e-4), optix.add_decayed_weights(0.1)]
)
def test_params_none_when_needed(tx):
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="`add_decayed_weights` needs the current parameters"):
        tx.update(PARAMS, state, None)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.uint8])
@pytest.mark.parametrize(
    "factory", [lambda: optix.adam(1e-3), lambda: optix.sgd(0.1), lambda: optix.scale(2.0)]
)
def test_integer_and_boolean_leaves_name_the_path(factory, dtype):
    bad = {"layer": {"w": jnp.ones(3), "step": jnp.zeros(2, dtype)}}
    with pytest.raises(TypeError, match="leaf 'layer/step' has dtype"):
        factory().init(bad)
    good = {"layer": {"w": jnp.ones(3), "step": jnp.zeros(2)}}
    tx = factory()
    state = tx.init(good)
    with pytest.raises(TypeError, match="leaf 'layer/step' has dtype"):
        tx.update(bad, state, good)


def test_chain_rejects_non_transforms():
    with pytest.raises(TypeError, match="member #1 .*forget to call"):
        optix.chain(optix.scale(1.0), optix.scale_by_adam)


def test_mask_with_another_structure_is_an_error():
    # a dict without the params' structure: the uncovered leaf is named
    tx = optix.adamw(1e-3, mask={"w": True})
    with pytest.raises(
        ValueError, match="'b' is in params but not in|no pattern matches the leaf 'b'"
    ):
        tx.init(PARAMS)
    # a list mask of the wrong length names the missing path
    tx = optix.add_decayed_weights(0.1, mask=[True])
    with pytest.raises(ValueError, match="'1' is in params but not in"):
        tx.init([jnp.ones(2), jnp.ones(2)])


def test_hyperparameter_must_be_real():
    with pytest.raises(ValueError, match="real"):
        optix.sgd(1e-3 + 1j)


@pytest.mark.parametrize(
    "make, argument, error",
    [
        (lambda: optix.adam("1e-3"), "learning_rate", TypeError),
        (lambda: optix.adam(None), "learning_rate", TypeError),
        (lambda: optix.sgd(True), "learning_rate", TypeError),
        (lambda: optix.adam(1e-3, b1="0.9"), "b1", TypeError),
        (lambda: optix.adam(1e-3, b2=np.bool_(False)), "b2", TypeError),
        (lambda: optix.adam(1e-3, eps=1j), "eps", ValueError),
        (lambda: optix.sgd(0.1, momentum=object()), "momentum", TypeError),
    ],
)
def test_hyperparameters_that_are_not_real_numbers_name_the_argument(make, argument, error):
    """Refused when the optimizer is built (not at init, not with a message naming nothing)."""
    with pytest.raises(error, match=f"`{argument}` must be a real number"):
        make()


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda v: optix.sgd(v), "learning_rate"),
        (lambda v: optix.adam(1e-3, b1=v), "b1"),
        (lambda v: optix.rmsprop(1e-3, eps=v), "eps"),
        (lambda v: optix.scale(v), "factor"),
    ],
)
@pytest.mark.parametrize("shape", [(1,), (3,), (2, 1)])
def test_array_shaped_hyperparameters_are_refused(make, argument, shape):
    """An array would broadcast into the params (a scalar param became shape (1,)) and skipped
    the range check (``sgd(jnp.array([-1.0]))`` went uphill)."""
    with pytest.raises(ValueError, match=f"`{argument}` must be a scalar, got an array of shape"):
        make(jnp.full(shape, 0.5, jnp.float32))
    with pytest.raises(ValueError, match=f"`{argument}` must be a scalar"):
        make(np.full(shape, -1.0))


@pytest.mark.parametrize(
    "as_scalar",
    [np.float32, np.float64, np.array, jnp.array, lambda x: jnp.asarray(x, jnp.bfloat16)],
    ids=["np.float32", "np.float64", "numpy-0d", "jax-0d", "jax-bfloat16"],
)
def test_range_checks_apply_to_numpy_scalars_and_0d_arrays(as_scalar):
    with pytest.raises(ValueError, match="`learning_rate` must be a finite number >= 0"):
        optix.sgd(as_scalar(-1.0))
    for bad in (1.0, 1.5, -0.5):
        with pytest.raises(ValueError, match=r"`b1` must be in \[0, 1\)"):
            optix.adam(1e-3, b1=as_scalar(bad))
    optix.adam(as_scalar(0.5), b1=as_scalar(0.5))  # in range: accepted


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: optix.adam(1e-3, b1=0.99999999), "b1"),
        (lambda: optix.adam(1e-3, b2=1 - 1e-9), "b2"),
        (lambda: optix.rmsprop(1e-3, decay=0.999999999), "decay"),
        (lambda: optix.sgd(0.1, momentum=np.float64(1 - 1e-10)), "momentum"),
        (lambda: optix.adam(1e-3, eps=1e39), "eps"),
    ],
)
def test_a_value_that_float32_rounds_out_of_range_is_refused(make, argument):
    """``adam(b1=0.99999999)`` stored b1 as exactly 1.0 and divided by ``1 - b1**t = 0``."""
    with pytest.raises(ValueError, match=f"`{argument}` must be .*rounds to .* in float32"):
        make()


def test_values_close_to_a_bound_are_kept_in_float64_under_x64(x64):
    del x64
    tx = optix.adam(1e-3, b1=0.99999999)
    params = {"w": jnp.ones(3, jnp.float64)}
    state = tx.init(params)
    assert optix.get_hyperparams(state)["b1"].dtype == jnp.float64
    updates, _ = tx.update(params, state, params)
    assert np.isfinite(np.asarray(updates["w"])).all()


@pytest.mark.parametrize(
    ("factory", "argument", "value"),
    [
        (optix.adafactor, "clipping_threshold", -1.0),
        (optix.adafactor, "weight_decay_rate", -1.0),
        (optix.adafactor, "eps_scale", -1.0),
        (optix.muon, "adam_learning_rate", -1.0),
        (optix.muon, "adam_b1", 1.5),
        (optix.muon, "adam_b2", -0.1),
        (optix.muon, "adam_eps", -1.0),
        (optix.muon, "adam_weight_decay", -1.0),
        (optix.ademamix, "alpha_warmup_steps", 0),
        (optix.ademamix, "b3_warmup_steps", 0),
    ],
)
def test_errors_name_the_argument_the_caller_wrote(factory, argument, value):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        factory(1e-3, **{argument: value})


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.adan(1e-3, b3=1.0),
        lambda: optix.ademamix(1e-3, b3=-0.1),
        lambda: optix.ademamix(1e-3, alpha=-1.0),
        lambda: optix.ademamix(1e-3, alpha_warmup_steps=0),
        lambda: optix.ademamix(1e-3, b3=optix.schedules.constant(0.99), b3_warmup_steps=10),
        lambda: optix.adopt(1e-3, b2=1.0),
        lambda: optix.adopt(1e-3, clip_value=-1.0),
        lambda: optix.lion(1e-3, b1=1.5),
        lambda: optix.signum(1e-3, beta=1.0),
        lambda: optix.yogi(1e-3, initial_accumulator_value=-1.0),
        lambda: optix.adabelief(1e-3, eps_root=-1.0),
        lambda: optix.rprop(0.1, eta_minus=1.0),
        lambda: optix.rprop(0.1, eta_plus=1.0),
        lambda: optix.rprop(0.1, min_step_size=1.0, max_step_size=0.5),
        lambda: optix.rprop(-0.1),
    ],
)
def test_invalid_hyperparameters_are_rejected_at_construction(make):
    with pytest.raises((ValueError, TypeError)):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: optix.lamb(1e-2),
        lambda: optix.lars(1e-2),
        lambda: optix.novograd(1e-2),
        lambda: optix.fromage(1e-2),
        lambda: optix.scale_by_trust_ratio(),
    ],
)
def test_needs_params_and_rejects_bad_hyperparameters(make):
    tx = make()
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(params, tx.init(params), None)


def test_invalid_hyperparameters_raise():
    with pytest.raises(ValueError, match="trust_coefficient"):
        optix.scale_by_trust_ratio(trust_coefficient=-1.0)
    with pytest.raises(ValueError, match="min_norm"):
        optix.fromage(0.1, min_norm=-1.0)
    with pytest.raises(ValueError, match="b2"):
        optix.novograd(0.1, b2=1.0)
    with pytest.raises(ValueError, match="momentum"):
        optix.lars(0.1, momentum=1.5)
    state = optix.lamb(0.1).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="trust_coefficient"):
        optix.set_hyperparams(state, trust_coefficient=-0.5)


def test_arguments_are_checked_naming_them():
    with pytest.raises(ValueError, match="momentum"):
        optix.madgrad(momentum=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        optix.madgrad(-1.0)
    with pytest.raises(ValueError, match="alpha"):
        optix.cocob(alpha=0.0)
    with pytest.raises(ValueError, match="eps"):
        optix.cocob(eps=-1.0)
    with pytest.raises(ValueError, match="init_step"):
        optix.dog(init_step=("guess", 1e-6))
    with pytest.raises(ValueError, match="init_step"):
        optix.dog(init_step=("distance", 0.0))
    with pytest.raises(ValueError, match="init_estim_sq_dist"):
        optix.dowg(init_estim_sq_dist=-1.0)
    with pytest.raises(ValueError, match="b1"):
        optix.simplified_ademamix(1e-3, b1=1.0)
    with pytest.raises(ValueError, match="alpha"):
        optix.simplified_ademamix(1e-3, alpha=-1.0)
    with pytest.raises(ValueError, match="b2"):
        optix.acprop(1e-3, b2=1.5)
    state = optix.cocob().init(jnp.zeros(2))
    with pytest.raises(ValueError, match="alpha"):
        optix.set_hyperparams(state, alpha=0.0)
    with pytest.raises(ValueError, match="needs the current parameters"):
        optix.cocob().update(jnp.ones(2), state)
    with pytest.raises(TypeError, match="complex"):
        optix.cocob().init(jnp.zeros(2, jnp.complex64))
