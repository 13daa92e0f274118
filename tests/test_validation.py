"""Bad input gets a clear error, raised early, naming the argument or the tree path."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
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
    # a dict without the params' structure is read as path patterns: the uncovered leaf is named
    tx = optix.adamw(1e-3, mask={"w": True})
    with pytest.raises(ValueError, match="no pattern matches the leaf 'b'"):
        tx.init(PARAMS)
    # a list mask of the wrong length names the missing path
    tx = optix.add_decayed_weights(0.1, mask=[True])
    with pytest.raises(ValueError, match="'1' is in params but not in"):
        tx.init([jnp.ones(2), jnp.ones(2)])


def test_hyperparameter_must_be_real():
    with pytest.raises(ValueError, match="real"):
        optix.sgd(1e-3 + 1j)
