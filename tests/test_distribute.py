"""The matrix work of Muon, NorMuon, Shampoo, SOAP and PSGD Kron split over devices:
:func:`optix.sharding.distribute_matrices`, :func:`optix.sharding.zero` (which does it by default)
and the helper they set in motion, ``optix.transforms._distribute.map_matrices``.

The multi-device checks run in a child process that sees 8 CPU devices (this file run as a script)
and reports back; the tests assert on the report. The reference is the same optimizer stepped on
one device, without any wrapper.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix
from optix.sharding import distribute_matrices
from optix.transforms._distribute import map_matrices

DEVICES = 8
STEPS = 10
NAMES = ("muon", "normuon", "shampoo", "shampoo_eigenvalue_corrected", "soap", "psgd_kron")


def _make(name, spec, block_size=8):
    """The optimizers under test, with options that exercise blocks and basis refreshes."""
    if name == "muon":
        return optix.muon(0.02, matrix_spec=spec)
    if name == "normuon":
        return optix.normuon(0.02, matrix_spec=spec)
    if name == "shampoo":
        return optix.shampoo(0.1, matrix_spec=spec, block_size=block_size, precondition_frequency=2)
    if name == "shampoo_eigenvalue_corrected":
        return optix.shampoo(
            0.1,
            matrix_spec=spec,
            block_size=block_size,
            precondition_frequency=2,
            preconditioner="eigenvalue_corrected",
        )
    if name == "soap":
        return optix.soap(0.01, matrix_spec=spec, precondition_frequency=2)
    return optix.psgd_kron(0.01, precond_update_every=2)


def test_on_8_devices():
    """One child process (one JAX start) runs every multi-device check; see the module docstring."""
    from tests._multidevice import run_child

    report = run_child(Path(__file__), devices=DEVICES)
    assert "zero_auto_rel_err" in report["muon"]
    for name in NAMES:
        r = report[name]
        # ZeRO (replicated params, state split over "data") and tensor-parallel params split over
        # "model": 10 steps give the single-device params, to rtol 1e-6 (float64)
        assert r["zero_rel_err"] <= 1e-6, (name, r)
        assert r.get("zero_auto_rel_err", 0.0) <= 1e-6, (name, r)
        assert r["sharded_rel_err"] <= 1e-6, (name, r)
        assert r["sharded_params_stay_split"], (name, r)
        # per-device flops of a step whose cost is the matrix work: at most 1.25/8 of the run
        # that repeats every matrix on every device (ZeRO without the split; sharded params
        # without the wrapper)
        assert r["zero_flops"] <= 1.25 / DEVICES * r["zero_flops_replicated"], (name, r)
        assert r["sharded_flops"] <= 1.25 / DEVICES * r["sharded_flops_replicated"], (name, r)


def test_map_matrices_without_distribution_calls_each_job():
    calls = []

    def fn(key, arrays, c):
        calls.append((key, arrays.shape))
        return arrays * c

    jobs = [("a", jnp.ones((2, 3, 3))), ("a", jnp.ones((1, 3, 3))), ("b", jnp.ones((4, 2, 5)))]
    out = map_matrices(fn, jobs, (2.0,))
    assert calls == [("a", (2, 3, 3)), ("a", (1, 3, 3)), ("b", (4, 2, 5))]
    for (_, x), y in zip(jobs, out, strict=True):
        np.testing.assert_array_equal(y, 2 * x)


def test_distribute_matrices_on_one_device_is_the_optimizer():
    mesh = jax.make_mesh((1,), ("model",))
    params = {"w": jnp.arange(12.0).reshape(4, 3) / 10, "b": jnp.ones(3)}
    grads = {"w": jnp.cos(jnp.arange(12.0)).reshape(4, 3), "b": jnp.ones(3)}
    tx = optix.muon(0.02)
    want, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    dtx = distribute_matrices(tx, mesh)
    with jax.set_mesh(mesh):
        got, _ = jax.jit(dtx.update)(grads, dtx.init(params), params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_errors():
    mesh = jax.make_mesh((1,), ("model",))
    with pytest.raises(ValueError, match="axis"):
        distribute_matrices(optix.muon(0.02), mesh, axis="data")
    with pytest.raises(TypeError, match="mesh"):
        distribute_matrices(optix.muon(0.02), "mesh")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the child process


def _tree(rng, dtype, stacked):
    """Several matrix leaves (two of one shape, one of its transpose, a stack of 4 on axis 0 when
    ``stacked``) and a vector."""
    tree = {
        "a": jnp.asarray(rng.normal(size=(16, 8)), dtype),
        "b": jnp.asarray(rng.normal(size=(16, 8)), dtype),
        "c": jnp.asarray(rng.normal(size=(8, 16)), dtype),
        "s": jnp.asarray(rng.normal(size=(4, 16, 8)), dtype),
        "v": jnp.asarray(rng.normal(size=(8,)), dtype),
    }
    if not stacked:
        del tree["s"]
    return tree


def _train(tx, params, grads):
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optix.apply_updates(p, u), s

    step = jax.jit(step)
    state = jax.jit(tx.init)(params)
    for g in grads:
        params, state = step(params, state, g)
    return params


def _rel_err(got, want):
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )


def _flops(tx, params):
    state = jax.jit(tx.init)(params)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p)).lower(params, state, params).compile()
    return float(step.cost_analysis()["flops"])


def _child(name):
    from jax.sharding import AxisType
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    stacked = name != "psgd_kron"  # psgd_kron takes leaves of at most two axes
    spec = {"s": optix.MatrixSpec(batch_axes=(0,))}
    tx = _make(name, spec)
    rng = np.random.default_rng(0)
    params = _tree(rng, jnp.float64, stacked)
    grads = [_tree(rng, jnp.float64, stacked) for _ in range(STEPS)]
    want = _train(tx, params, grads)
    out = {}

    # ZeRO on JAX's default (explicit) mesh axes: replicated params, state split over "data"
    data = jax.make_mesh((DEVICES,), ("data",))
    with jax.set_mesh(data):
        rep = NamedSharding(data, P())
        got = _train(optix.sharding.zero(tx, data), *jax.device_put((params, grads), rep))
    out["zero_rel_err"] = _rel_err(got, want)
    if name == "muon":  # the same on automatic mesh axes (the split itself is shared code)
        data_auto = jax.make_mesh((DEVICES,), ("data",), axis_types=(AxisType.Auto,))
        rep = NamedSharding(data_auto, P())
        got = _train(optix.sharding.zero(tx, data_auto), *jax.device_put((params, grads), rep))
        out["zero_auto_rel_err"] = _rel_err(got, want)

    # tensor parallel, explicit mesh axes: each matrix split over "model" on one axis
    model = jax.make_mesh((DEVICES,), ("model",))
    layout = {"a": P("model"), "b": P(None, "model"), "c": P("model"), "s": P(None, "model")}
    layout = {k: layout.get(k, P("model")) for k in params}
    shardings = {k: NamedSharding(model, s) for k, s in layout.items()}
    split = jax.device_put(params, shardings)
    gs = [jax.device_put(g, shardings) for g in grads]
    with jax.set_mesh(model):
        got = _train(distribute_matrices(tx, model), split, gs)
    out["sharded_rel_err"] = _rel_err(got, want)
    out["sharded_params_stay_split"] = all(
        got[k].sharding.is_equivalent_to(shardings[k], got[k].ndim) for k in shardings
    )

    # flops: a float32 tree whose cost is the matrix work (16 matrices of 64 x 64)
    big = {f"w{i}": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32) for i in range(12)}
    if stacked:
        big["s"] = jnp.asarray(rng.normal(size=(4, 64, 64)), jnp.float32)
    else:
        big.update({f"x{i}": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32) for i in range(4)})
    big["v"] = jnp.asarray(rng.normal(size=(64,)), jnp.float32)
    big_tx = _make(name, spec, block_size=32)
    with jax.set_mesh(data):
        on_data = jax.device_put(big, NamedSharding(data, P()))
        out["zero_flops_replicated"] = _flops(
            optix.sharding.zero(big_tx, data, split_matrix_work=False), on_data
        )
        out["zero_flops"] = _flops(optix.sharding.zero(big_tx, data), on_data)
    on_model = {
        k: jax.device_put(x, NamedSharding(model, P(*[None] * (x.ndim - 1), "model")))
        for k, x in big.items()
    }
    with jax.set_mesh(model):
        out["sharded_flops_replicated"] = _flops(big_tx, on_model)
        out["sharded_flops"] = _flops(distribute_matrices(big_tx, model), on_model)
    return out


def _main() -> None:
    import sys
    import time

    from tests._multidevice import emit

    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == DEVICES, jax.devices()
    out = {}
    for name in NAMES:
        start = time.perf_counter()
        out[name] = _child(name)
        print(f"{name}: {time.perf_counter() - start:.1f}s {out[name]}", file=sys.stderr)
    emit(out)


if __name__ == "__main__":
    _main()
