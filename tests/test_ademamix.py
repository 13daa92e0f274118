"""AdEMAMix: its alpha and beta_3 warmups.

The step-by-step comparisons with ``optax.contrib.ademamix`` (and the paper's warmup schedules)
are in ``tests/references.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix


def test_ademamix_warmups_reach_their_targets():
    tx = optix.ademamix(1e-3, b3=0.999, alpha=4.0, alpha_warmup_steps=10, b3_warmup_steps=10)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    seen = []
    for _ in range(12):
        _, state = update({"w": jnp.ones(2)}, state, params)
        hp = optix.get_hyperparams(state)
        seen.append((float(hp["alpha"]), float(hp["b3"])))
    # the values used by the update at counts 0 .. 11
    np.testing.assert_allclose([a for a, _ in seen], [min(t / 10, 1) * 4 for t in range(12)])
    assert seen[0][1] == pytest.approx(0.9) and seen[-1][1] == pytest.approx(0.999)
    assert all(b1 <= b2 for (_, b1), (_, b2) in zip(seen, seen[1:], strict=False))


@pytest.mark.parametrize("bad", [0, -3, 1.5])
def test_ademamix_warmup_errors_name_the_callers_argument(bad):
    from optix.optimizers._ademamix import alpha_warmup
    from optix.optimizers._ademamix import b3_warmup

    with pytest.raises((ValueError, TypeError), match="`alpha_warmup_steps` must be"):
        alpha_warmup(5.0, bad, steps_name="alpha_warmup_steps")
    with pytest.raises((ValueError, TypeError), match="`b3_warmup_steps` must be"):
        b3_warmup(0.9999, bad, 0.9, steps_name="b3_warmup_steps")
