"""Optimizer state never shares a buffer with the params, nor with itself, so a jitted step that
donates both (``jax.jit(step, donate_argnums=(0, 1))``, flax's usual train step) runs: XLA refuses
to donate one buffer twice."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training.train_state import TrainState

import optix
from tests.cases import CASES
from tests.cases import IDS
from tests.cases import WRAPPER_IDS
from tests.cases import WRAPPERS
from tests.test_contract import _grads
from tests.test_contract import _params


def _copy(tree):
    return jax.tree.map(jnp.array, tree)


def _assert_fresh_buffers(state, params):
    """No leaf of ``state`` is a params leaf's buffer, and no two state leaves share one."""
    owners = {
        x.unsafe_buffer_pointer(): "params" + jax.tree_util.keystr(k)
        for k, x in jax.tree_util.tree_leaves_with_path(params)
    }
    for k, x in jax.tree_util.tree_leaves_with_path(state):
        where = "state" + jax.tree_util.keystr(k)
        pointer = x.unsafe_buffer_pointer()
        assert pointer not in owners, f"{where} is the buffer of {owners[pointer]}"
        owners[pointer] = where


def _run_donating_step(tx, params, steps=2):
    """Init, check the buffers, then ``steps`` steps of a step donating params and state."""
    state = tx.init(params)
    _assert_fresh_buffers(state, params)
    # a second init shares no buffer with the first: donating one state (a restarted run, two
    # models with one optimizer) never deletes the other's keys or hyperparameters
    _assert_fresh_buffers(tx.init(params), (params, state))

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
        return optix.apply_updates(params, updates), state

    jitted = jax.jit(step, donate_argnums=(0, 1))
    for seed in range(steps):
        old_params, old_state = jax.tree.leaves(params), jax.tree.leaves(state)
        params, state = jitted(params, state, _grads(params, seed))
        # the step really took both (a state leaf the step never reads, such as a schedule's last
        # value, is pruned from the compiled step and so not donated)
        assert all(x.is_deleted() for x in old_params)
        assert any(x.is_deleted() for x in old_state)
    for x in jax.tree.leaves(params):
        assert bool(jnp.all(jnp.isfinite(x)))
    return params, state


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_registry_state_owns_its_buffers(case):
    _run_donating_step(case.make(), _params())


# Wrappers beyond the contract suite's, and wrappers around optimizers that copy the params.
_MORE_WRAPPERS = {
    "sam": lambda tx: optix.sam(tx, rho=0.05),
    "sam_three_evaluations": lambda tx: optix.sam(tx, reset_state=False, sync_period=3),
    "schedule_free": lambda tx: optix.schedule_free(optix.identity(), 0.1),
    "quantize_state": lambda tx: optix.quantize_state(tx, min_size=1, block_size=4),
    "fuse": optix.fuse,
    "lookahead_reset": lambda tx: optix.lookahead(tx, 2, 0.5, reset_state=True),
    "accumulate_schedule": lambda tx: optix.accumulate(tx, lambda t: 1 + t % 2),
    "param_ema_debias": lambda tx: optix.chain(tx, optix.param_ema(0.9, debias=True)),
    "quantized_copies": lambda tx: optix.quantize_state(
        optix.lookahead(optix.chain(optix.schedule_free_adamw(1e-2), optix.param_ema(0.9)), 2, 0.5),
        min_size=1,
        block_size=4,
    ),
}


@pytest.mark.parametrize("wrapper", WRAPPER_IDS + list(_MORE_WRAPPERS))
def test_wrapper_state_owns_its_buffers(wrapper):
    make = WRAPPERS.get(wrapper) or _MORE_WRAPPERS[wrapper]
    _run_donating_step(make(optix.adam(1e-2)), _params())


def test_bfloat16_params_state_owns_its_buffers():
    # a widened copy is always fresh; the param's own dtype (here asked for) is where it aliased
    tx = optix.chain(
        optix.lookahead(optix.schedule_free_sgd(0.1, z_dtype=jnp.bfloat16), 2, 0.5),
        optix.param_ema(0.9, ema_dtype=jnp.bfloat16),
    )
    _run_donating_step(tx, _params(jnp.bfloat16))


def test_linen_train_state_with_a_donating_train_step():
    model = nn.Dense(3)
    x = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)
    params = model.init(jax.random.key(0), x)["params"]
    tx = optix.schedule_free_adamw(1e-2)  # its `z` was the params' own buffers
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    _assert_fresh_buffers(state.opt_state, state.params)
    reference = TrainState.create(apply_fn=model.apply, params=_copy(params), tx=tx)

    def train_step(state):
        grads = jax.grad(lambda p: jnp.sum(state.apply_fn({"params": p}, x) ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    donating = jax.jit(train_step, donate_argnums=0)
    for _ in range(2):
        state = donating(state)
        reference = jax.jit(train_step)(reference)
    assert int(state.step) == 2
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)
