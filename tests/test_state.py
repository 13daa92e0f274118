"""Every field of a nested state is addressable by a readable path, listed and printable."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix

PARAMS = {"layer": {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}}
GRADS = jax.tree.map(lambda x: jnp.full_like(x, 0.5), PARAMS)


def _composite():
    return optix.named_chain(
        clip=optix.clip_by_global_norm(1.0),
        encoder=optix.adamw(1e-3, weight_decay=0.1),
        extra=optix.sgd(0.1, momentum=0.9),
    )


def test_state_paths_list_every_array_readably():
    state = _composite().init(PARAMS)
    paths = optix.state_paths(state)
    assert len(paths) == len(jax.tree.leaves(state))
    for expected in [
        "clip/max_norm",
        "encoder/0/mu/layer/w",
        "encoder/0/nu/layer/b",
        "encoder/0/b1",
        "encoder/2/learning_rate",
        "extra/0/trace/layer/w",
        "extra/1/learning_rate",
    ]:
        assert expected in paths


def test_state_get_by_short_and_full_address():
    tx = _composite()
    state = tx.init(PARAMS)
    _, state = tx.update(GRADS, state, PARAMS)
    mu = optix.state_get(state, "encoder/mu")
    clipped = 0.5 / np.sqrt(9 * 0.25)  # clip_by_global_norm(1.0) of nine 0.5 entries
    np.testing.assert_allclose(mu["layer"]["w"], 0.1 * clipped * np.ones((2, 3)), rtol=1e-6)
    assert optix.state_get(state, "encoder/0/mu/layer/w").shape == (2, 3)
    assert float(optix.state_get(state, "clip/max_norm")) == 1.0
    with pytest.raises(ValueError, match="ambiguous.*encoder/2/learning_rate.*extra/1/learning"):
        optix.state_get(state, "learning_rate")
    with pytest.raises(ValueError, match="no state field 'nope'"):
        optix.state_get(state, "nope")


def test_state_set_replaces_one_field_and_keeps_dtypes():
    tx = _composite()
    state = tx.init(PARAMS)
    new_mu = jax.tree.map(lambda x: np.ones(x.shape, np.float64), PARAMS)
    changed = optix.state_set(state, "encoder/mu", new_mu)
    got = optix.state_get(changed, "encoder/mu")
    assert got["layer"]["w"].dtype == jnp.float32
    np.testing.assert_array_equal(got["layer"]["w"], 1.0)
    # everything else is untouched
    for path in optix.state_paths(state):
        if "/mu/" not in path:
            np.testing.assert_array_equal(
                optix.state_get(changed, path), optix.state_get(state, path)
            )
    with pytest.raises(ValueError, match="shape"):
        optix.state_set(state, "encoder/0/mu/layer/w", jnp.ones(4))
    with pytest.raises(ValueError, match="structure"):
        optix.state_set(state, "encoder/mu", {"w": jnp.ones(3)})


def test_state_set_does_not_recompile():
    tx = _composite()
    chex.clear_trace_counter()  # chex counts per definition site, shared across runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state):
        return tx.update(GRADS, state, PARAMS)[1]

    state = step(tx.init(PARAMS))
    state = optix.state_set(state, "extra/0/count", 0)
    step(state)


def test_format_state_is_readable():
    text = optix.format_state(_composite().init(PARAMS))
    assert "encoder: tuple" in text
    assert "learning_rate: float32[] = 0.001" in text
    assert "w: float32[2,3]" in text
    assert "values" not in text and "scheduled" not in text


def test_named_chain_accepts_pairs_and_keywords_in_order():
    tx = optix.named_chain(("first", optix.scale(2.0)), second=optix.scale(3.0))
    state = tx.init(PARAMS)
    assert list(state) == ["first", "second"]
    out, _ = tx.update(GRADS, state)
    np.testing.assert_allclose(out["layer"]["w"], 3.0, rtol=1e-6)
