"""skip_spikes and zclip: NumPy transcriptions of their rules, bitwise-unchanged skipped steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def _expected_spikes(xs, window, threshold, warmup, eps=1e-8):
    """The skip rule, transcribed: indices of the values that are spikes."""
    accepted, spikes = [], []
    for i, x in enumerate(xs):
        w = np.asarray(accepted[-window:], np.float64)
        spike = not np.isfinite(x)
        if not spike and len(w) >= warmup:
            z = (x - w.mean()) / (w.std(ddof=0) + eps)
            spike = z > threshold
        if spike:
            spikes.append(i)
        else:
            accepted.append(x)
    return spikes


_NORMS = [1.0, 1.1, 0.9, 1.05, 8.0, 1.0, 0.95, 1.2, np.inf, 1.1, 30.0, 1.0, 1.3, 1.02, 5.0, 0.98]


def _grad(norm):
    # a two-leaf gradient whose global norm is `norm` (3-4-5 triangle)
    return {"a": jnp.array([0.6 * norm], jnp.float32), "b": jnp.array([0.8 * norm], jnp.float32)}


@pytest.mark.parametrize("on", ["grad_norm", "loss"])
def test_skip_spikes_skips_what_the_rule_names_and_leaves_state_bitwise(on):
    window, threshold, warmup = 5, 3.0, 3
    tx = optix.skip_spikes(
        optix.adam(0.1), window=window, threshold=threshold, warmup=warmup, on=on
    )
    params = {"a": jnp.ones(1), "b": jnp.ones(1)}
    state = tx.init(params)
    step = jax.jit(tx.update)
    rng = np.random.default_rng(0)
    skipped = []
    for i, x in enumerate(_NORMS):
        if on == "loss":
            g = {"a": jnp.asarray(rng.normal(size=1), jnp.float32), "b": jnp.ones(1)}
            updates, new = step(g, state, params, loss=jnp.float32(x))
        else:
            updates, new = step(_grad(x), state, params)
        if int(new.skipped) > int(state.skipped):
            skipped.append(i)
            chex.assert_trees_all_equal(new._replace(skipped=state.skipped), state)
            chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, updates))
        else:
            assert int(new.skipped) == int(state.skipped)
        state = new
    expected = _expected_spikes(np.float32(_NORMS).astype(np.float64), window, threshold, warmup)
    assert skipped == expected
    assert len(expected) >= 3  # the sequence does exercise the rule


def test_skip_spikes_without_loss_raises_naming_it():
    tx = optix.skip_spikes(optix.sgd(0.1), on="loss")
    state = tx.init({"w": jnp.zeros(1)})
    with pytest.raises(TypeError, match="loss"):
        tx.update({"w": jnp.ones(1)}, state)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"window": 0}, "window"),
        ({"window": 2.5}, "window"),
        ({"warmup": 0}, "warmup"),
        ({"window": 4, "warmup": 5}, "warmup"),
        ({"threshold": 0.0}, "threshold"),
        ({"on": "params"}, "on"),
    ],
)
def test_skip_spikes_bad_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
        optix.skip_spikes(optix.sgd(0.1), **kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"alpha": 1.0}, "alpha"),
        ({"z_thresh": -1.0}, "z_thresh"),
        ({"warmup_steps": 0}, "warmup_steps"),
        ({"max_norm": 0.0}, "max_norm"),
    ],
)
def test_zclip_bad_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
        optix.zclip(**kwargs)


def test_hyperparams_reach_wrapper_and_inner():
    tx = optix.skip_spikes(optix.adam(0.1), threshold=4.0)
    state = tx.init({"w": jnp.zeros(2)})
    hp = optix.get_hyperparams(state)
    assert float(hp["threshold"]) == 4.0 and float(hp["learning_rate"]) == pytest.approx(0.1)
    state = optix.set_hyperparams(state, threshold=2.0, learning_rate=0.5)
    hp = optix.get_hyperparams(state)
    assert float(hp["threshold"]) == 2.0 and float(hp["learning_rate"]) == 0.5
    with pytest.raises(ValueError, match="threshold"):
        optix.set_hyperparams(state, threshold=-1.0)

    tx = optix.chain(optix.zclip(alpha=0.9, z_thresh=2.0), optix.sgd(0.1))
    state = tx.init({"w": jnp.zeros(2)})
    state = optix.set_hyperparams(state, alpha=0.5, z_thresh=3.0, learning_rate=0.2)
    hp = optix.get_hyperparams(state)
    assert (float(hp["alpha"]), float(hp["z_thresh"])) == (0.5, 3.0)
    assert float(hp["learning_rate"]) == pytest.approx(0.2)


def _zclip_numpy(norms, alpha, z_thresh, warmup, max_norm, eps=1e-6):
    """The ZClip rule, transcribed: the norm after clipping, for each step."""
    buf, mean, var, out = [], None, None, []
    for n in norms:
        if mean is None:
            buf.append(n)
            if len(buf) == warmup:
                mean = np.mean(buf)
                var = np.var(buf)
            out.append(n if max_norm is None else min(n, max_norm))
            continue
        std = np.sqrt(var)
        z = (n - mean) / (std + eps)
        c = mean + z_thresh**2 / z * std if z > z_thresh else n
        out.append(min(c, n) if max_norm is None else min(c, n, max_norm))
        mean = alpha * mean + (1 - alpha) * c
        var = alpha * var + (1 - alpha) * (c - mean) ** 2
    return np.array(out)


@pytest.mark.parametrize("max_norm", [None, 4.0])
def test_zclip_matches_numpy_transcription_float64(max_norm):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        norms = np.abs(1.0 + 0.2 * rng.normal(size=120))
        norms[[30, 31, 60, 90, 91, 92]] *= [6.0, 3.0, 10.0, 4.0, 8.0, 2.5]
        alpha, z_thresh, warmup = 0.9, 2.0, 10
        tx = optix.zclip(alpha, z_thresh, warmup_steps=warmup, max_norm=max_norm)
        direction = np.array([0.6, 0.8])
        state = tx.init(jnp.zeros(2, jnp.float64))
        step = jax.jit(tx.update)
        got = []
        for n in norms:
            u, state = step(jnp.asarray(n * direction), state)
            got.append(float(jnp.linalg.norm(u)))
        want = _zclip_numpy(norms, alpha, z_thresh, warmup, max_norm)
        np.testing.assert_allclose(got, want, rtol=1e-10)
        assert np.sum(np.array(got) < norms - 1e-9) >= 4  # clipping did happen


def test_no_recompile_and_donation():
    for tx in (
        optix.skip_spikes(optix.adamw(0.1), window=4),
        optix.chain(optix.zclip(warmup_steps=2), optix.adamw(0.1)),
    ):
        params = {"w": jnp.ones(3)}
        chex.clear_trace_counter()  # `traced` is defined anew for each tx

        @jax.jit
        @chex.assert_max_traces(n=1)
        def traced(g, s, p, tx=tx):
            return tx.update(g, s, p)

        state = tx.init(params)
        for g in (1.0, 2.0, 1.5):
            _, state = traced({"w": jnp.full(3, g)}, state, params)

        def train(p, s, g, tx=tx):
            u, s = tx.update(g, s, p)
            return optix.apply_updates(p, u), s

        donated = jax.jit(train, donate_argnums=(0, 1))
        p, s = {"w": jnp.ones(3)}, tx.init({"w": jnp.ones(3)})
        for g in (1.0, 1.1, 0.9, 50.0, 1.0):
            p, s = donated(p, s, {"w": jnp.full(3, g)})
        assert bool(jnp.all(jnp.isfinite(p["w"])))
