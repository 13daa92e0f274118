"""The state of a complex composition saves as plain arrays and resumes bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from tests.test_contract import _grads
from tests.test_contract import _params


def _composition():
    labels = {"scalar": "frozen", "vector": "main", "layer": ["main"]}
    return optix.named_chain(
        clip=optix.clip_by_global_norm(1.0),
        body=optix.skip_nonfinite(
            optix.partition(
                {
                    "main": optix.accumulate(
                        optix.adamw(optix.schedules.warmup_cosine_decay(0.0, 1e-2, 3, 30)), 2
                    ),
                    "frozen": optix.set_to_zero(),
                },
                labels,
            )
        ),
        plateau=optix.reduce_on_plateau(patience=2),
        ema=optix.param_ema(0.9),
    )


def _run(tx, params, state, seeds):
    step = jax.jit(lambda p, s, g, v: tx.update(g, s, p, value=v))
    for seed in seeds:
        updates, state = step(params, state, _grads(params, seed), jnp.float32(10.0 - seed))
        params = optix.apply_updates(params, updates)
    return params, state


def test_savez_round_trip_resumes_bitwise(tmp_path):
    tx = _composition()
    params = _params()
    params, state = _run(tx, params, tx.init(params), range(5))
    state = optix.set_hyperparams(state, **{"weight_decay": 0.05})

    path = tmp_path / "ckpt.npz"
    leaves = jax.tree.leaves((params, state))
    np.savez(path, *[np.asarray(x) for x in leaves])

    # restore into the structure a fresh init gives, then continue both runs
    fresh = tx.init(_params())
    treedef = jax.tree.structure((params, fresh))
    with np.load(path) as data:
        restored = [data[f"arr_{i}"] for i in range(len(data.files))]
    r_params, r_state = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in restored])
    for a, b in zip(jax.tree.leaves((r_params, r_state)), leaves, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape

    expected = _run(tx, params, state, range(5, 12))
    resumed = _run(tx, r_params, r_state, range(5, 12))
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(optix.get_hyperparams(resumed[1])["weight_decay"]) == pytest.approx(0.05)


def test_restoring_into_the_wrong_structure_is_a_clear_error():
    tx = _composition()
    state = tx.init(_params())
    other = optix.adam(1e-3).init(_params())
    with pytest.raises(ValueError, match="chain"):
        optix.adam(1e-3).update(_grads(_params()), state, _params())
    with pytest.raises(ValueError, match="named_chain expected a state dict"):
        tx.update(_grads(_params()), other, _params(), value=jnp.float32(1.0))


def test_restore_state_keeps_a_key_holding_a_slash_apart_from_the_nested_path():
    """``{"a/b": ..., "a": {"b": ...}}``: both leaves have the text path ``a/b``."""
    params = {"a/b": jnp.ones(2, jnp.float32), "a": {"b": jnp.full(3, 2.0, jnp.float32)}}
    tx = optix.adam(1e-2)
    _, state = tx.update(params, tx.init(params), params)
    saved = jax.tree.map(np.asarray, state)  # the same nesting, as a checkpointer gives back
    rebuilt = optix._checkpoint.restore_state(tx, saved, params)
    optix._checkpoint.check_state(tx, rebuilt, params)
    for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(state), strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    # flattened to '/'-joined text the two cannot be told apart: refused, not guessed
    flat = dict(zip(optix.state_paths(state), jax.tree.leaves(state), strict=True))
    with pytest.raises(ValueError, match="leaf at '0/mu/a/b' could belong to several"):
        optix._checkpoint.restore_state(tx, flat, params)
