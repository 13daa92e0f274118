"""optix.monitor records norms in its state; optix.metrics reads them from any nested state."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optix


def _params():
    rng = np.random.default_rng(0)
    return {
        "encoder": {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)},
        "head": {"w": jnp.asarray(rng.normal(size=4), jnp.float32), "b": jnp.ones(2)},
    }


def _grads(seed=1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), _params())


def _norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in tree)))


def _leaves(tree, *paths):
    return [tree[a][b] for a, b in (p.split("/") for p in paths)]


GROUPS = {"encoder": "encoder/**", "bias": ["**/b"], "head_and_enc": ["head/w", "encoder"]}


def test_norms_match_optax_and_numpy():
    tx = optix.monitor(optix.adamw(1e-2, weight_decay=0.1), groups=GROUPS)
    params, grads = _params(), _grads()
    updates, state = tx.update(grads, tx.init(params), params)
    got = optix.metrics(state)
    np.testing.assert_allclose(got["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    u, p = jax.tree.leaves(updates), jax.tree.leaves(params)
    np.testing.assert_allclose(got["update_norm"], _norm(u), rtol=1e-6)
    np.testing.assert_allclose(got["param_norm"], _norm(p), rtol=1e-6)
    np.testing.assert_allclose(got["update_param_ratio"], _norm(u) / _norm(p), rtol=1e-6)
    assert int(got["skipped_steps"]) == 0
    members = {
        "encoder": ["encoder/w"],
        "bias": ["head/b"],
        "head_and_enc": ["head/w", "encoder/w"],
    }
    for group, paths in members.items():
        want_g, want_u = _norm(_leaves(grads, *paths)), _norm(_leaves(updates, *paths))
        np.testing.assert_allclose(got[f"grad_norm/{group}"], want_g, rtol=1e-6)
        np.testing.assert_allclose(got[f"update_norm/{group}"], want_u, rtol=1e-6)
    assert all(v.shape == () for v in got.values())


def test_no_params_records_nan():
    tx = optix.monitor(optix.sgd(0.1))
    _, state = tx.update(_grads(), tx.init(_params()))
    got = optix.metrics(state)
    assert np.isnan(got["param_norm"]) and np.isnan(got["update_param_ratio"])
    np.testing.assert_allclose(got["update_norm"], 0.1 * got["grad_norm"], rtol=1e-6)


def test_a_pattern_matching_nothing_is_an_error_naming_it():
    tx = optix.monitor(optix.sgd(0.1), groups={"ok": "encoder", "typo": ["head", "**/bias"]})
    with pytest.raises(ValueError, match=r"'\*\*/bias' matches no leaf"):
        tx.init(_params())
    with pytest.raises(TypeError, match="groups"):
        optix.monitor(optix.sgd(0.1), groups={"g": []})


def test_jitted_steps_trace_once_and_donate():
    tx = optix.monitor(optix.chain(optix.clip_by_global_norm(1.0), optix.adam(1e-2)), groups=GROUPS)
    chex.clear_trace_counter()

    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state, optix.metrics(state)

    jitted = jax.jit(step, donate_argnums=(0, 1))
    params = _params()
    state = tx.init(params)
    for seed in range(3):
        old = jax.tree.leaves(state)
        grads = _grads(seed)
        params, state, got = jitted(params, state, grads)
        assert any(x.is_deleted() for x in old)
        np.testing.assert_allclose(got["grad_norm"], _norm(jax.tree.leaves(grads)), rtol=1e-6)
    assert float(got["update_norm"]) > 0  # recorded after clipping and adam


def test_skip_nonfinite_inside_is_counted():
    tx = optix.monitor(optix.skip_nonfinite(optix.sgd(0.1)))
    params = _params()
    state = tx.init(params)
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), _grads())
    step = jax.jit(lambda g, s: tx.update(g, s, params))
    for grads in (bad, _grads(), bad):
        updates, state = step(grads, state)
    got = optix.metrics(state)
    assert int(got["skipped_steps"]) == 2
    assert np.isnan(got["grad_norm"]) and float(got["update_norm"]) == 0.0


def test_hyperparams_reach_the_inner_optimizer():
    tx = optix.monitor(optix.adam(1e-3))
    state = tx.init(_params())
    assert float(optix.get_hyperparams(state)["learning_rate"]) == pytest.approx(1e-3)
    state = optix.set_hyperparams(state, learning_rate=0.5)
    assert float(optix.get_hyperparams(state)["learning_rate"]) == 0.5
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, _params()), state, _params())
    np.testing.assert_allclose(updates["head"]["b"], -0.5, rtol=1e-4)


def test_several_monitors_are_prefixed_by_path():
    tx = optix.named_chain(a=optix.monitor(optix.sgd(0.1)), b=optix.monitor(optix.scale(2.0)))
    _, state = tx.update(_grads(), tx.init(_params()), _params())
    got = optix.metrics(state)
    assert {"a/grad_norm", "b/grad_norm", "b/skipped_steps"} <= set(got)
    np.testing.assert_allclose(got["b/grad_norm"], 0.1 * got["a/grad_norm"], rtol=1e-6)
    assert optix.metrics(optix.sgd(0.1).init(_params())) == {}


class _Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.encoder = nnx.Linear(2, 3, rngs=rngs)
        self.head = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.encoder(x)))


def test_under_nnx_optimizer_and_nnx_jit():
    model = _Net(nnx.Rngs(0))
    tx = optix.monitor(optix.adam(1e-2), groups={"bias": "**/bias"})
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.linspace(-1.0, 1.0, 10).reshape(5, 2)

    def loss(model):
        return jnp.mean((model(x) - 1.0) ** 2)

    chex.clear_trace_counter()

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def step(model, optimizer):
        grads = nnx.grad(loss)(model)
        optimizer.update(model, grads)
        return grads, optix.metrics(optimizer.opt_state)

    for _ in range(2):
        params = nnx.as_pure(nnx.state(model, nnx.Param))
        grads, got = step(model, optimizer)
    grads = nnx.as_pure(grads)
    np.testing.assert_allclose(got["grad_norm"], _norm(jax.tree.leaves(grads)), rtol=1e-6)
    np.testing.assert_allclose(got["param_norm"], _norm(jax.tree.leaves(params)), rtol=1e-6)
    biases = [grads["encoder"]["bias"], grads["head"]["bias"]]
    np.testing.assert_allclose(got["grad_norm/bias"], _norm(biases), rtol=1e-6)
    outside = optix.metrics(optimizer.opt_state)
    assert all(type(v) is type(jnp.zeros(())) for v in outside.values())  # arrays, not Variables
    assert set(outside) == set(got)
    np.testing.assert_array_equal(outside["grad_norm/bias"], got["grad_norm/bias"])


def test_skip_spikes_inside_is_counted():
    """A gradient-norm spike skipped by ``skip_spikes`` counts in ``skipped_steps``."""
    tx = optix.monitor(optix.skip_spikes(optix.sgd(0.1), window=8, warmup=3, threshold=3.0))
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    step = jax.jit(tx.update)
    for scale in (1.0, 1.1, 0.9, 1.0, 1e4, 1.0):  # the fifth gradient is a spike
        _, state = step({"w": jnp.full(3, scale)}, state, params)
    assert int(optix.metrics(state)["skipped_steps"]) == 1


def test_clip_records_the_norm_before_and_after_clipping():
    max_norm = 0.5
    tx = optix.monitor(optix.adam(1e-2), clip=optix.clip_by_global_norm(max_norm))
    plain = optix.chain(optix.clip_by_global_norm(max_norm), optix.adam(1e-2))
    params = _params()
    state, plain_state = tx.init(params), plain.init(params)

    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return updates, state, optix.metrics(state)

    jitted = jax.jit(step, donate_argnums=(1,))
    chex.clear_trace_counter()
    for seed, scale in [(1, 1.0), (2, 1e-3), (3, 10.0)]:
        grads = jax.tree.map(lambda g, s=scale: g * s, _grads(seed))
        updates, state, got = jitted(params, state, grads)
        want, plain_state = plain.update(grads, plain_state, params)
        chex.assert_trees_all_close(updates, want, rtol=1e-6)  # the same step as the chain
        norm = _norm(jax.tree.leaves(grads))
        np.testing.assert_allclose(got["grad_norm"], norm, rtol=1e-6)
        np.testing.assert_allclose(got["clipped_grad_norm"], min(norm, max_norm), rtol=1e-6)
    # the clip's hyperparameters live in the monitor's state, settable like any other
    state = optix.set_hyperparams(state, max_norm=0.25)
    _, _, got = jitted(params, state, _grads(4))
    np.testing.assert_allclose(got["clipped_grad_norm"], 0.25, rtol=1e-6)
    assert "clipped_grad_norm" not in optix.metrics(optix.monitor(optix.sgd(0.1)).init(params))
    with pytest.raises(TypeError, match="clip"):
        optix.monitor(optix.sgd(0.1), clip=0.5)


def test_metrics_records_only_the_names_asked_for():
    tx = optix.monitor(optix.adamw(1e-2, weight_decay=0.1), groups=GROUPS, metrics=["grad_norm"])
    params, grads = _params(), _grads()
    updates, state = tx.update(grads, tx.init(params), params)
    got = optix.metrics(state)
    assert set(got) == {"grad_norm"} | {f"grad_norm/{g}" for g in GROUPS}
    np.testing.assert_allclose(got["grad_norm"], optax.tree.norm(grads), rtol=1e-6)
    want_enc = _norm(_leaves(grads, "encoder/w"))
    np.testing.assert_allclose(got["grad_norm/encoder"], want_enc, rtol=1e-6)
    for field in ("update_norm", "param_norm", "update_param_ratio", "skipped_steps"):
        assert getattr(state, field) is None
    assert state.group_update_norms is None and state.clipped_grad_norm is None


def test_ratio_alone_records_the_ratio_alone():
    tx = optix.monitor(optix.sgd(0.1), metrics="update_param_ratio")
    params, grads = _params(), _grads()
    updates, state = tx.update(grads, tx.init(params), params)
    got = optix.metrics(state)
    assert set(got) == {"update_param_ratio"}
    want = _norm(jax.tree.leaves(updates)) / _norm(jax.tree.leaves(params))
    np.testing.assert_allclose(got["update_param_ratio"], want, rtol=1e-6)


def test_update_norms_alone_per_group():
    tx = optix.monitor(optix.sgd(0.1), groups={"bias": "**/b"}, metrics=("update_norm",))
    params, grads = _params(), _grads()
    updates, state = tx.update(grads, tx.init(params), params)
    got = optix.metrics(state)
    assert set(got) == {"update_norm", "update_norm/bias"}
    np.testing.assert_allclose(got["update_norm/bias"], 0.1 * _norm([grads["head"]["b"]]))
    assert state.grad_norm is None and state.group_grad_norms is None


@pytest.mark.parametrize(
    "metrics",
    [("grad_norm",), ("param_norm",), ("update_norm",), ("skipped_steps",), None],
)
def test_updates_are_the_inner_transforms_bit_for_bit(metrics):
    """Whatever is recorded, the updates are exactly those of ``tx`` alone (a zero gradient
    entry keeps its ``-0.0``), jitted with donated params and state."""
    inner = optix.sgd(0.1)
    tx = optix.monitor(inner, metrics=metrics)
    grads = _grads()
    grads["head"]["b"] = jnp.array([0.0, -2.0])
    want, _ = inner.update(grads, inner.init(_params()), _params())

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return updates, optix.apply_updates(params, updates), state

    params = _params()
    updates, _, _ = jax.jit(step, donate_argnums=(0, 1))(params, tx.init(params), grads)
    for got_leaf, want_leaf in zip(jax.tree.leaves(updates), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(got_leaf, want_leaf)
        np.testing.assert_array_equal(np.signbit(got_leaf), np.signbit(want_leaf))
    assert np.signbit(updates["head"]["b"][0])


def test_bad_metrics_are_errors_naming_them():
    with pytest.raises(ValueError, match=r"'grad_nrom'"):
        optix.monitor(optix.sgd(0.1), metrics=("grad_norm", "grad_nrom"))
    with pytest.raises(ValueError, match="empty"):
        optix.monitor(optix.sgd(0.1), metrics=())
    with pytest.raises(TypeError, match="metrics"):
        optix.monitor(optix.sgd(0.1), metrics=[3])
    with pytest.raises(ValueError, match=r"'clipped_grad_norm'.*`clip`"):
        optix.monitor(optix.sgd(0.1), metrics=("clipped_grad_norm",))
    with pytest.raises(ValueError, match="groups"):
        optix.monitor(optix.sgd(0.1), groups={"b": "**/b"}, metrics=("param_norm",))


def test_clip_with_metrics_subset():
    clip = optix.clip_by_global_norm(0.5)
    tx = optix.monitor(optix.sgd(0.1), clip=clip, metrics=("clipped_grad_norm", "grad_norm"))
    params, grads = _params(), _grads()
    _, state = tx.update(grads, tx.init(params), params)
    got = optix.metrics(state)
    assert set(got) == {"grad_norm", "clipped_grad_norm"}
    np.testing.assert_allclose(got["clipped_grad_norm"], 0.5, rtol=1e-6)
    tx = optix.monitor(optix.sgd(0.1), clip=clip, metrics=("grad_norm",))
    updates, state = tx.update(grads, tx.init(params), params)
    assert set(optix.metrics(state)) == {"grad_norm"}
    assert state.clipped_grad_norm is None
    np.testing.assert_allclose(_norm(jax.tree.leaves(updates)), 0.05, rtol=1e-6)  # still clipped
