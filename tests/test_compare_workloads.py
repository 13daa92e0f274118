"""The workloads of optix.compare: construction, splits, init, loss/evaluate, validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix.compare import DEFAULT_WORKLOADS
from optix.compare import WORKLOADS
from optix.compare import Split
from optix.compare import Workload
from optix.compare import _problems

NAMES = sorted(WORKLOADS)


def _rows(split: Split) -> set[bytes]:
    x = np.ascontiguousarray(np.asarray(split.x))
    return {row.tobytes() for row in x}


@pytest.mark.parametrize("name", NAMES)
def test_workload_constructs_and_is_consistent(name):
    w = WORKLOADS[name]()
    assert w.name == name and w.description and w.budget > 0 and math.isfinite(w.target)
    if w.kind == "landscape":
        assert w.train is None and w.box is not None and w.minima
        for point in w.minima:  # the marked minima are minima of the loss, at f_min
            assert float(w.loss(jnp.asarray(point, jnp.float32), None)) == pytest.approx(
                w.f_min, abs=1e-5
            )
    if w.train is None:
        assert w.valid is None and w.test is None and w.metric == "loss"
        return
    # Splits: deterministic (a second construction gives the same arrays) and disjoint.
    again = WORKLOADS[name]()
    for a, b in zip(
        (w.train, w.valid, w.test), (again.train, again.valid, again.test), strict=True
    ):
        assert a is not None and b is not None
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    train, valid, test = (_rows(s) for s in (w.train, w.valid, w.test))  # type: ignore[arg-type]
    assert not (train & valid) and not (train & test) and not (valid & test)
    # The target is reachable in principle: above the loss floor for a "loss" metric.
    assert w.metric == "error" or w.target > w.f_min


@pytest.mark.parametrize("name", NAMES)
def test_init_loss_evaluate_jit_vmap(name):
    w = WORKLOADS[name]()
    stacked = jax.jit(jax.vmap(w.init))(jnp.asarray([0, 1, 0]))  # pure JAX in the seed
    first = w.init(0)
    for leaf, row in zip(jax.tree.leaves(first), jax.tree.leaves(stacked), strict=True):
        assert leaf.dtype == jnp.float32
        np.testing.assert_array_equal(row[0], leaf)  # vmapped init = init, seed by seed
        np.testing.assert_array_equal(row[2], leaf)  # deterministic in the seed
    assert any(not np.array_equal(r[1], r[0]) for r in jax.tree.leaves(stacked))

    # A few examples of each split keep the test cheap; the code path is the same.
    def small(split):
        return None if split is None else Split(split.x[:5], split.y[:5])

    batch = None if w.train is None else (w.train.x[:4], w.train.y[:4])
    valid = small(w.valid)

    @jax.jit  # one compile per workload: loss and evaluate, vmapped over the params of 3 seeds
    def check(params):
        loss = jax.vmap(w.loss, in_axes=(0, None))(params, batch)
        return loss, jax.vmap(w.evaluate, in_axes=(0, None))(params, valid)

    loss, metrics = check(stacked)
    assert loss.shape == (3,) and np.all(np.isfinite(loss))
    expected = {"loss", "error"} if w.predict is not None else {"loss"}
    assert set(metrics) == expected and w.metric in metrics
    for value in metrics.values():
        assert value.shape == (3,) and np.all(np.isfinite(value))
    if w.predict is not None:
        assert np.all((metrics["error"] >= 0) & (metrics["error"] <= 1))


def test_landscapes_start_where_the_old_problems_did():
    for name in ("rosenbrock", "beale", "saddle", "rastrigin"):
        old, new = _problems.PROBLEMS[name](), WORKLOADS[name]()
        np.testing.assert_array_equal(new.init(0), old.init(0))
        assert new.target == pytest.approx(old.f_min + old.target)


def test_default_workloads_are_built_in():
    assert DEFAULT_WORKLOADS and set(DEFAULT_WORKLOADS) <= set(WORKLOADS)


def _line() -> dict:
    x = jnp.linspace(-1.0, 1.0, 16)[:, None]
    split = Split(x, 2.0 * x[:, 0])
    return {
        "name": "line",
        "init": lambda seed: jnp.zeros(1, jnp.float32),
        "loss": lambda p, b: jnp.mean((b[0] @ p - b[1]) ** 2),
        "target": 1e-3,
        "train": split,
        "valid": split,
        "batch_size": 4,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"init": 3}, "init"),
        ({"target": float("nan")}, "target"),
        ({"target": "low"}, "target"),
        ({"metric": "accuracy"}, "metric"),
        ({"metric": "error"}, "predict"),
        ({"budget": 0}, "budget"),
        ({"budget": 10.0}, "budget"),
        ({"eval_every": 0}, "eval_every"),
        ({"batch_size": 17}, "batch_size"),
        ({"kind": "vision"}, "kind"),
        ({"valid": None}, "valid"),
        ({"train": (1, 2)}, "train"),
        ({"train": None}, "valid"),  # data-free but with a validation split
        ({"box": ((1.0, 0.0), (0.0, 1.0))}, "box"),
        ({"minima": (1.0, 2.0)}, "minima"),
    ],
)
def test_bad_workload_argument_names_the_field(change, field):
    with pytest.raises(ValueError, match=rf"Workload\.{field}\b"):
        Workload(**(_line() | change))


def test_bad_split_names_the_field():
    with pytest.raises(ValueError, match=r"Split\.x and Split\.y"):
        Split(jnp.zeros((3, 2)), jnp.zeros(4))
    with pytest.raises(ValueError, match=r"Split\.y"):
        Split(jnp.zeros((3, 2)), jnp.zeros(()))


def test_user_defined_workload_trains():
    w = Workload(**(_line() | {"budget": 50}))
    assert isinstance(w.train.x, jax.Array) and w.metric == "loss"
    tx = optix.sgd(0.3)
    params, state = w.init(0), tx.init(w.init(0))
    for step in range(w.budget):
        idx = (4 * step + jnp.arange(4)) % len(w.train)
        grads = jax.grad(w.loss)(params, (w.train.x[idx], w.train.y[idx]))
        updates, state = tx.update(grads, state, params)
        params = optix.apply_updates(params, updates)
    assert float(w.metric_value(params, w.valid)) <= w.target
    assert w.evaluate(params, w.valid).keys() == {"loss"}
