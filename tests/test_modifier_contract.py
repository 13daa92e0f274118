"""The contract suite crosses every modifier (``cautious``, ``mars``, ``graft``) with every
optimizer of the registry: one jitted step per case runs the three, twice; each keeps its state's
structure, and gives finite updates in the gradient's dtype."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import pytest

import optix
from tests.cases import CASES
from tests.cases import IDS
from tests.test_contract import _grads
from tests.test_contract import _params
from tests.test_contract import _signature

MODIFIERS = {
    "cautious": lambda case: optix.cautious(case.make()),
    "mars": lambda case: optix.mars(case.make()),
    "graft": lambda case: optix.graft(case.make(), optix.sgd(0.1, momentum=0.9)),
}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_modifier_around_every_optimizer(case):
    txs = {name: make(case) for name, make in MODIFIERS.items()}
    params = _params()
    states = {name: tx.init(params) for name, tx in txs.items()}
    signatures = {name: _signature(s) for name, s in states.items()}
    chex.clear_trace_counter()  # chex counts per definition site, which every case shares

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, states, grads):
        out = {
            n: tx.update(grads, states[n], params, value=jnp.float32(1.0)) for n, tx in txs.items()
        }
        return {n: u for n, (u, _) in out.items()}, {n: s for n, (_, s) in out.items()}

    for seed in range(2):
        updates, states = step(params, states, _grads(params, seed))
        for name in txs:
            assert _signature(states[name]) == signatures[name], name
            chex.assert_trees_all_equal_dtypes(updates[name], params)
            chex.assert_tree_all_finite(updates[name])
        params = optix.apply_updates(params, updates["mars"])
