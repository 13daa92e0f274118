"""Every wrapper crossed with every optimizer in the registry, through the same contract."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.cases import CASES
from tests.cases import IDS
from tests.cases import WRAPPER_IDS
from tests.cases import WRAPPERS
from tests.test_contract import _grads
from tests.test_contract import _params
from tests.test_contract import _signature
from tests.test_contract import assert_scan_and_cond_keep


@pytest.mark.parametrize("wrapper", WRAPPER_IDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrapper_contract(wrapper, case):
    tx = WRAPPERS[wrapper](case.make())
    params = _params()
    state = tx.init(params)

    # init works on abstract params and gives the concrete state's signature
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    assert _signature(jax.eval_shape(tx.init, shapes)) == _signature(state)

    # jitted steps, with a `value` for the transforms that read it; one trace throughout
    chex.clear_trace_counter()  # chex counts per definition site, which every case shares

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads, value):
        updates, state = tx.update(grads, state, params, value=value)
        return optix.apply_updates(params, updates), state, updates

    first, signature = params, _signature(state)
    for seed in range(4):
        params, state, updates = step(params, state, _grads(params, seed), jnp.float32(seed))
        assert _signature(state) == signature
        chex.assert_trees_all_equal_dtypes(updates, params)
        chex.assert_tree_all_finite(updates)

    # the wrapped optimizer's hyperparameters are reachable and settable, without recompiling
    hp = optix.get_hyperparams(state)
    rates = [k for k in hp if k.endswith("learning_rate")]
    assert rates, sorted(hp)
    state = optix.set_hyperparams(state, {k: 1e-4 for k in rates})
    params, state, _ = step(params, state, _grads(params, 9), jnp.float32(1.0))
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(first), strict=True)
    ]
    assert any(moved)

    # the state is a valid lax.scan carry and lax.cond branch, checked while tracing (the step
    # above already ran compiled)
    assert_scan_and_cond_keep(tx, state, params, compiled=False, value=jnp.float32(0.0))


@pytest.mark.parametrize("wrapper", WRAPPER_IDS)
def test_wrapper_keeps_low_precision_dtypes(wrapper):
    tx = WRAPPERS[wrapper](optix.adamw(1e-3))
    params = _params(jnp.bfloat16)
    state = tx.init(params)
    updates, state = jax.jit(lambda g, s, p: tx.update(g, s, p, value=jnp.float32(1.0)))(
        _grads(params), state, params
    )
    for u in jax.tree.leaves(updates):
        assert u.dtype == jnp.bfloat16
    assert all(v.dtype == jnp.float32 for v in optix.get_hyperparams(state).values())
    assert all(
        x.dtype == jnp.bfloat16 for x in jax.tree.leaves(optix.apply_updates(params, updates))
    )
