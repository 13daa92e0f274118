"""Per-example clipping (global and per-layer norms) against optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix


def _batched_grads(rng, batch: int = 16) -> dict[str, jax.Array]:
    shapes = {"scalar": (), "vector": (6,), "matrix": (3, 4), "kernel": (2, 3, 2)}
    out = {}
    for k, s in shapes.items():
        scales = np.exp(rng.uniform(-3, 2, size=(batch,) + (1,) * len(s)))
        out[k] = jnp.asarray(scales * rng.standard_normal((batch,) + s))
    out["vector"] = out["vector"].at[3].set(0.0)  # an all-zero example in one leaf
    return out


@pytest.mark.parametrize("clip", [0.0, 0.5, 3.0, 1e9])
def test_per_example_global_norm_clip_matches_optax(clip, x64):
    grads = _batched_grads(np.random.default_rng(1))
    zero_example = jax.tree.map(lambda g: g.at[5].set(0.0), grads)  # 0/0 never happens
    for tree in (grads, zero_example):
        got, n_got = optix.per_example_global_norm_clip(tree, clip)
        want, n_want = optax.per_example_global_norm_clip(tree, clip)
        assert int(n_got) == int(n_want)
        for k in tree:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("clip", [0.0, 0.5, 3.0, 1e9])
def test_per_example_layer_norm_clip_matches_optax(clip, uniform, x64):
    grads = _batched_grads(np.random.default_rng(2))
    got, n_got = optix.per_example_layer_norm_clip(grads, clip, uniform)
    want, n_want = optax.per_example_layer_norm_clip(grads, clip, uniform)
    for k in grads:
        assert int(n_got[k]) == int(n_want[k]), k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15)
