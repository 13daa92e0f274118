"""Optimizer state saved with orbax-checkpoint (and with numpy) resumes bit for bit, and a
checkpoint of another optimizer is refused when it is loaded, with the mismatching path named."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import optix
from optix._checkpoint import check_state
from optix._checkpoint import restore_state
from tests.cases import CASES


def _params():
    rng = np.random.default_rng(0)
    return {
        "encoder": {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros(4)},
        "head": {"w": jnp.asarray(rng.normal(size=4), jnp.float32), "b": jnp.zeros(())},
    }


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _composition(bias_pattern="**/b"):
    schedule = optix.schedules.warmup_cosine_decay(0.0, 1e-2, 3, 30)
    return optix.named_chain(
        clip=optix.clip_by_global_norm(1.0),
        body=optix.skip_nonfinite(
            optix.partition(
                {"main": optix.accumulate(optix.adamw(schedule), 2), "bias": optix.adam(1e-2)},
                {bias_pattern: "bias", "**": "main"},
            )
        ),
        plateau=optix.reduce_on_plateau(patience=2),
        ema=optix.param_ema(0.9),
    )


TX = _composition()
_STEP = jax.jit(lambda p, s, g, v: TX.update(g, s, p, value=v))


def _run(params, state, seeds):
    for seed in seeds:
        updates, state = _STEP(params, state, _grads(params, seed), jnp.float32(10.0 - seed))
        params = optix.apply_updates(params, updates)
    return params, state


def _trained():
    """Five steps in (one with a NaN gradient, skipped), then a hyperparameter changed by hand."""
    params = _params()
    params, state = _run(params, TX.init(params), range(3))
    bad = jax.tree.map(lambda g: g.at[...].set(jnp.nan), _grads(params, 3))
    _, state = _STEP(params, state, bad, jnp.float32(7.0))
    params, state = _run(params, state, range(4, 6))
    return params, optix.set_hyperparams(state, weight_decay=0.05)


def _assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def _abstract(tx, params):
    return {"params": jax.eval_shape(lambda: params), "state": jax.eval_shape(tx.init, params)}


def test_orbax_round_trip_resumes_bitwise(tmp_path):
    params, state = _trained()
    assert int(optix.state_get(state, "body/skipped")) == 1  # the NaN step was really skipped
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", {"params": params, "state": state})
        ckpt.wait_until_finished()
        restored = ckpt.restore(tmp_path / "ckpt", _abstract(TX, params))
    _assert_identical(restored, {"params": params, "state": state})
    check_state(TX, restored["state"], restored["params"])
    assert float(optix.get_hyperparams(restored["state"])["weight_decay"]) == pytest.approx(0.05)

    expected = _run(params, state, range(6, 14))
    resumed = _run(restored["params"], restored["state"], range(6, 14))
    _assert_identical(resumed, expected)


def test_orbax_restore_without_target_goes_through_restore_state(tmp_path):
    # Without a target orbax returns plain dicts and lists; restore_state rebuilds the NamedTuples.
    params, state = _trained()
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", state)
        ckpt.wait_until_finished()
        raw = ckpt.restore(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="container types differ"):
        check_state(TX, raw, params)
    rebuilt = restore_state(TX, raw, params)
    _assert_identical(rebuilt, state)
    _assert_identical(_run(params, rebuilt, range(6, 10)), _run(params, state, range(6, 10)))


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(optix.adam(1e-2), id="adam"),
        pytest.param(_composition(bias_pattern="head/**"), id="other-partition"),
    ],
)
def test_orbax_refuses_a_checkpoint_of_another_optimizer(tmp_path, other):
    params = _params()
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", other.init(params))
        ckpt.wait_until_finished()
        # orbax itself refuses a target of another structure, naming a path...
        with pytest.raises(ValueError, match="Structure mismatch"):
            ckpt.restore(tmp_path / "ckpt", jax.eval_shape(TX.init, params))
        raw = ckpt.restore(tmp_path / "ckpt")
    # ...and a target-less restore is refused by restore_state, naming the first missing leaf
    with pytest.raises(ValueError, match="no leaf at '.+'"):
        restore_state(TX, raw, params)


def test_a_checkpoint_in_other_dtypes_is_refused(tmp_path):
    # Restoring into a target, orbax silently casts each array to the target's dtype, so a state
    # saved with bfloat16 moments would "restore" as float32 and resume with different numbers.
    # Restored without a target, the arrays keep their stored dtypes and restore_state refuses.
    params = _params()
    saved = optix.adam(1e-2, mu_dtype=jnp.bfloat16).init(params)
    tx = optix.adam(1e-2)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", saved)
        ckpt.wait_until_finished()
        cast = ckpt.restore(tmp_path / "ckpt", jax.eval_shape(tx.init, params))
        raw = ckpt.restore(tmp_path / "ckpt")
    assert cast[0].mu["encoder"]["w"].dtype == jnp.float32  # orbax converted without a word
    with pytest.raises(ValueError, match=r"leaf '0/mu/encoder/b' is bfloat16\[4\].*float32\[4\]"):
        restore_state(tx, raw, params)
    with pytest.raises(ValueError, match=r"leaf '0/mu/encoder/b' is bfloat16"):
        check_state(tx, saved, params)


def test_numpy_savez_round_trip_by_path(tmp_path):
    # A second backend: one .npz entry per leaf, keyed by its path, read back with restore_state.
    params, state = _trained()
    leaves = {
        path: np.asarray(x)
        for path, x in zip(optix._paths.leaf_paths(state), jax.tree.leaves(state), strict=True)
    }
    np.savez(tmp_path / "state.npz", **leaves)
    with np.load(tmp_path / "state.npz") as data:
        flat = {name: data[name] for name in data.files}
    rebuilt = restore_state(TX, flat, params)
    _assert_identical(rebuilt, state)
    _assert_identical(_run(params, rebuilt, range(6, 10)), _run(params, state, range(6, 10)))

    # the same file read for another partition of the params: the first leaf it lacks is named
    other = _composition(bias_pattern="head/**")  # head/w now has Adam moments in "bias"
    with pytest.raises(
        ValueError, match="no leaf at 'body/inner_state/inner_states/bias/0/mu/head/w'"
    ):
        restore_state(other, flat, params)
    with pytest.raises(
        ValueError, match="has a leaf at '.+', which this transform's state does not"
    ):
        restore_state(optix.named_chain(clip=optix.clip_by_global_norm(1.0)), flat, params)


def test_orbax_restore_state_with_a_key_holding_a_slash(tmp_path):
    params = {"a/b": jnp.ones(2, jnp.float32), "a": {"b": jnp.full(3, 2.0, jnp.float32)}}
    tx = optix.adam(1e-2)
    _, state = tx.update(params, tx.init(params), params)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", state)
        ckpt.wait_until_finished()
        raw = ckpt.restore(tmp_path / "ckpt")
    _assert_identical(restore_state(tx, raw, params), state)


def test_every_registry_state_saves_and_restores_through_orbax(tmp_path):
    """Every registry optimizer's state, a step in, goes through one orbax checkpoint and comes
    back bit for bit: no state holds an array orbax cannot save, such as the empty placeholder
    GaLore once kept for a leaf it does not project (the bias and the scalar here)."""
    params = _params()
    states = {}
    for case in CASES:
        tx = case.make()
        state = tx.init(params)
        _, states[case.name] = tx.update(_grads(params, 0), state, params, value=jnp.float32(1.0))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "ckpt", states)
        ckpt.wait_until_finished()
        restored = ckpt.restore(tmp_path / "ckpt", jax.eval_shape(lambda: states))
    _assert_identical(restored, states)
