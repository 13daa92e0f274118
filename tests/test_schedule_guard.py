"""A user schedule that leaves its hyperparameter's range: an error outside jit, a clamp inside it.

The scenario of the bug report: ``optix.sgd(lambda s: 1e-2 * (1 - s / 100))``, a hand-written
linear decay that goes negative after step 100, so every later update climbs the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix import _hyperparams
from optix import _schedule_guard
from optix._schedule_guard import GUARDED

TARGET = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
N = 150


def decay_past_zero(s):
    return 1e-2 * (1 - s / 100)  # negative from step 101 on


def loss(w):
    return 0.5 * jnp.sum((w - TARGET) ** 2)


def run_jitted(tx, n=N):
    """Params, loss and learning rate read from the state after each of ``n`` jitted updates."""
    w = jnp.zeros(4)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return optix.apply_updates(w, updates), state

    ws, losses, lrs = [], [], []
    for _ in range(n):
        w, state = step(w, state)
        ws.append(np.asarray(w))
        losses.append(float(loss(w)))
        lrs.append(float(optix.get_hyperparams(state)["learning_rate"]))
    return np.array(ws), np.array(losses), np.array(lrs)


def test_raw_schedule_would_train_uphill():
    """The defect, in plain NumPy SGD with the schedule's raw values: the loss rises after 100."""
    w = np.zeros(4, np.float64)
    losses = []
    for s in range(N):
        w = w - decay_past_zero(s) * (w - TARGET)
        losses.append(0.5 * np.sum((w - TARGET) ** 2))
    assert losses[-1] > losses[99] * 1.2


def test_negative_learning_rate_is_clamped_to_zero_inside_jit():
    """Under jit the learning rate stops at 0: from step 101 the params do not move, the loss does
    not rise, and the state shows the rate the update used (0.0). Before the guard the loss rose
    by the margin test_raw_schedule_would_train_uphill shows."""
    ws, losses, lrs = run_jitted(optix.sgd(decay_past_zero))
    clamped = optix.sgd(lambda s: jnp.maximum(decay_past_zero(s), 0.0))
    ws_ref, _, lrs_ref = run_jitted(clamped)
    np.testing.assert_array_equal(ws, ws_ref)
    np.testing.assert_array_equal(lrs, lrs_ref)
    assert np.all(lrs[101:] == 0.0) and lrs[99] > 0.0
    np.testing.assert_array_equal(ws[101:], np.broadcast_to(ws[100], ws[101:].shape))
    assert losses[-1] <= losses[99]


def test_out_of_range_learning_rate_raises_outside_jit():
    tx = optix.sgd(decay_past_zero)
    w = jnp.zeros(4)
    state = tx.init(w)
    for _ in range(101):  # steps 0..100 are in range
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        w = optix.apply_updates(w, updates)
    with pytest.raises(ValueError, match=r"`learning_rate` gave -[0-9.e-]+ at step 101.*>= 0"):
        tx.update(jax.grad(loss)(w), state, w)


def beta_jump(s):
    return jnp.where(s < 5, 0.9, 1.5)


def test_beta_at_or_above_one_is_clamped_below_one_inside_jit():
    """``b1 >= 1`` would make Adam's bias correction divide by zero; it is held just below 1."""
    below_one = np.nextafter(np.float32(1), np.float32(0))
    grads = {"w": jnp.array([0.5, -1.0])}

    def updates_of(tx, n=8):
        state = tx.init(grads)
        update = jax.jit(tx.update)
        out = []
        for _ in range(n):
            u, state = update(grads, state)
            out.append(np.asarray(u["w"]))
        return np.array(out), float(optix.get_hyperparams(state)["b1"])

    ours, b1 = updates_of(optix.adam(1e-2, b1=beta_jump))
    ref, _ = updates_of(optix.adam(1e-2, b1=lambda s: jnp.where(s < 5, 0.9, below_one)))
    assert b1 == below_one
    assert np.all(np.isfinite(ours))
    np.testing.assert_array_equal(ours, ref)


def test_out_of_range_beta_raises_outside_jit():
    tx = optix.adam(1e-2, b1=beta_jump)
    grads = {"w": jnp.ones(2)}
    state = tx.init(grads)
    for _ in range(5):
        _, state = tx.update(grads, state)
    with pytest.raises(ValueError, match=r"`b1` gave 1\.5 at step 5.*in \[0, 1\)"):
        tx.update(grads, state)


def test_nonfinite_learning_rate_raises_outside_jit():
    tx = optix.sgd(lambda s: jnp.where(s < 2, 0.1, jnp.inf))
    state = tx.init(jnp.zeros(2))
    for _ in range(2):
        _, state = tx.update(jnp.ones(2), state)
    with pytest.raises(ValueError, match="learning_rate.*step 2"):
        tx.update(jnp.ones(2), state)


@pytest.mark.parametrize("jit", [False, True])
def test_hyperparameters_without_a_fixed_range_are_left_alone(jit):
    """``scale_by_schedule``'s value may be negative; it is neither clamped nor refused."""
    tx = optix.scale_by_schedule(lambda s: jnp.full(jnp.shape(s), -0.5))
    update = jax.jit(tx.update) if jit else tx.update
    updates, _ = update(jnp.ones(2), tx.init(jnp.zeros(2)))
    np.testing.assert_array_equal(np.asarray(updates), [-0.5, -0.5])


def test_guarded_ranges_never_clamp_a_value_a_transform_accepts():
    """Each guarded name's range holds the range every transform declares for that name (the
    one ``set_hyperparams`` enforces): every probe outside the guard's range is refused by each
    declared rule for the name, so the clamp only ever moves invalid values."""
    probes = {False: [-0.1, -1e-30, float("inf")], True: [-0.1, -1e-30, 1.0, 1.5]}
    rules = [
        (name, rule) for (_, name), rule in _hyperparams._OWNER_RULES.items() if name in GUARDED
    ]
    assert {name for name, _ in rules} == set(GUARDED)  # every guarded name is declared somewhere
    for name, rule in rules:
        for value in probes[GUARDED[name][0]]:
            with pytest.raises(ValueError):
                rule(name, value)
    # and the guard leaves values inside its range as they are
    count = jnp.zeros([], jnp.int32)
    for name in GUARDED:
        for value in [0.0, 0.5, 0.999] + ([] if GUARDED[name][0] else [2.0, 1e9]):
            out = _schedule_guard.in_range(name, jnp.float32(value), count)
            assert float(out) == np.float32(value)
