"""Optimizer state under ``jax.sharding``: :func:`optix.sharding.state_shardings` and ZeRO-1.

The multi-device checks run in a child process that sees 8 CPU devices (this file run as a script)
and reports back; the tests assert on the report. The expected sharding of each state leaf comes
from an independent rule based on key paths: a state leaf whose path ends with a param's path and
whose shape equals that param's takes the param's sharding; every other leaf is replicated.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import optix
from optix.sharding import state_shardings
from optix.sharding import zero
from optix.sharding import zero_spec

DEVICES = 8


def test_on_8_devices():
    """One child process (one JAX start) runs every multi-device check; see the module docstring."""
    from tests._multidevice import run_child
    from tests.cases import IDS
    from tests.cases import WRAPPER_IDS

    report = run_child(Path(__file__), devices=DEVICES)

    # state_shardings: eager (device_put) and jitted init (out_shardings) of every optimizer and
    # every wrapper lay each leaf out as the path rule says, values unchanged; a jitted step keeps it
    layout = report["layout"]
    assert sorted(layout) == sorted(
        IDS + [f"{w}/{c}" for w in WRAPPER_IDS for c in ("adam", "sgd_l2")]
    )
    bad = {k: v for k, v in layout.items() if v}
    assert not bad, bad

    # recorded, not required: where a plain jax.jit(tx.init) puts the moments of sharded params
    assert set(report["plain_jit"]) == {"optix", "optax"}

    zero_report = report["zero"]
    # per-device optimizer-state memory falls to about 1/N of the unsharded state
    assert zero_report["per_device_bytes"] <= 1.2 / DEVICES * zero_report["total_bytes"]
    # params stay replicated, every moment buffer is split over the data axis
    assert zero_report["params_replicated"]
    assert zero_report["moments_split"]
    # ZeRO through jit shardings and through the `zero` wrapper equal the unsharded run
    assert zero_report["jit_shardings_equal"], zero_report
    assert zero_report["wrapper_equal"], zero_report
    assert zero_report["wrapper_layout"], zero_report
    bad = {k: v for k, v in zero_report["cases"].items() if not v}
    assert not bad, bad

    # an orbax checkpoint of the ZeRO-split state restores into the same layout, and training
    # continues bit for bit as if uninterrupted
    assert report["checkpoint"] == {"layout": True, "exact": True}


def test_zero_spec():
    mesh = jax.make_mesh((1,), ("data",))
    assert zero_spec((8, 3), P(), mesh, "data") == P("data")
    assert zero_spec((), P(), mesh, "data") == P()
    assert zero_spec((4,), P("data"), mesh, "data") == P("data")


def test_zero_spec_divisibility():
    # a fake 4-device axis through an abstract mesh: the shape arithmetic only
    mesh = jax.sharding.AbstractMesh((4, 2), ("data", "model"))
    assert zero_spec((6, 8), P(), mesh, "data") == P(None, "data")
    assert zero_spec((3, 5), P(), mesh, "data") == P()
    assert zero_spec((8, 3), P("model"), mesh, "data") == P(("model", "data"))
    assert zero_spec((6, 3), P("model"), mesh, "data") == P("model")


def test_errors():
    mesh = jax.make_mesh((1,), ("data",))
    params = {"w": jnp.zeros((2, 2))}
    with pytest.raises(ValueError, match="zero_axis"):
        state_shardings(optix.adam(1e-3), params, NamedSharding(mesh, P()), zero_axis="model")
    with pytest.raises(ValueError, match="axis"):
        zero(optix.adam(1e-3), mesh, axis="model")
    with pytest.raises(TypeError, match="mesh"):
        zero(optix.adam(1e-3), "mesh")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mesh="):
        state_shardings(optix.adam(1e-3), params)  # single-device arrays carry no mesh


def test_abstract_params_allocate_nothing():
    mesh = jax.make_mesh((1,), ("data",))
    shapes = {"w": jax.ShapeDtypeStruct((1 << 40,), jnp.float32)}  # 4 TiB: would not fit
    out = state_shardings(optix.adam(1e-3), shapes, NamedSharding(mesh, P()), zero_axis="data")
    assert out[0].mu["w"].spec == P("data")


# ---------------------------------------------------------------------------------------------
# the child process


def _expected(state_shapes, params, param_shardings, replicated):
    """The independent path-suffix rule (see the module docstring)."""
    by_path = {
        path: (p.shape, s)
        for (path, p), s in zip(
            jax.tree_util.tree_flatten_with_path(params)[0],
            jax.tree.leaves(param_shardings),
            strict=True,
        )
    }

    def leaf(path, x):
        for ppath, (shape, sharding) in by_path.items():
            if path[-len(ppath) :] == ppath and x.shape == shape:
                return sharding
        return replicated

    return jax.tree_util.tree_map_with_path(leaf, state_shapes)


def _child_layout(mesh):
    import numpy as np

    from tests.cases import BY_NAME
    from tests.cases import CASES
    from tests.cases import WRAPPERS

    rep = NamedSharding(mesh, P())
    shardings = {
        "scalar": rep,
        "vector": NamedSharding(mesh, P("data")),
        "layer": [NamedSharding(mesh, P("data", "model"))],
    }
    rng = np.random.default_rng(0)
    host = {
        "scalar": np.float32(0.5),
        "vector": rng.normal(size=(8,)).astype(np.float32),
        "layer": [rng.normal(size=(8, 4)).astype(np.float32)],
    }
    params = jax.device_put(host, shardings)
    grads = jax.device_put(jax.tree.map(lambda a: 0.1 * a, host), shardings)
    txs = {case.name: case.make() for case in CASES}
    for wrapper, wrap in WRAPPERS.items():
        for base in ("adam", "sgd_l2"):
            txs[f"{wrapper}/{base}"] = wrap(BY_NAME[base].make())

    problems = {}
    for name, tx in txs.items():
        errors = []
        derived = state_shardings(tx, params)
        abstract = jax.eval_shape(tx.init, params)
        expected = _expected(abstract, params, shardings, rep)
        state = tx.init(params)
        placed = jax.device_put(state, derived)
        jitted = jax.jit(tx.init, out_shardings=derived)(params)
        n_split = 0
        for (path, want), got_e, got_j, ref in zip(
            jax.tree_util.tree_flatten_with_path(expected)[0],
            jax.tree.leaves(placed),
            jax.tree.leaves(jitted),
            jax.tree.leaves(state),
            strict=True,
        ):
            where = jax.tree_util.keystr(path)
            n_split += not want.is_fully_replicated
            if not want.is_fully_replicated and not ref.sharding.is_equivalent_to(want, ref.ndim):
                # a plain eager init keeps every moment on its param's devices and layout
                errors.append(f"init {where}: {ref.sharding} != {want}")
            for label, got in (("eager", got_e), ("jit", got_j)):
                if not got.sharding.is_equivalent_to(want, got.ndim):
                    errors.append(f"{label} {where}: {got.sharding} != {want}")
                if not np.array_equal(np.asarray(got), np.asarray(ref)):
                    errors.append(f"{label} {where}: values differ")
        param_shapes = {x.shape for x in jax.tree.leaves(params) if x.ndim}
        follows = BY_NAME[name].state_follows_params if name in BY_NAME else True
        shaped_like = any(x.shape in param_shapes for x in jax.tree.leaves(abstract))
        if follows and n_split == 0 and shaped_like:
            errors.append("no state leaf took a param's sharding")
        if name.endswith("/sgd_l2"):
            problems[name] = errors  # the layout only: one jitted step per wrapper is enough
            continue

        # one jitted step with these shardings keeps them
        @functools.partial(jax.jit, out_shardings=(shardings, derived))
        def step(params, state, grads, tx=tx):
            updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
            return optix.apply_updates(params, updates), state

        _, new_state = step(params, jitted, grads)
        for (path, want), got in zip(
            jax.tree_util.tree_flatten_with_path(expected)[0],
            jax.tree.leaves(new_state),
            strict=True,
        ):
            if not got.sharding.is_equivalent_to(want, got.ndim):
                errors.append(f"step {jax.tree_util.keystr(path)}: {got.sharding}")
        problems[name] = errors
    return problems


def _child_plain_jit(mesh):
    import optax

    params = jax.device_put(
        {"w": jnp.ones((8, 4)), "b": jnp.ones(4)},
        {"w": NamedSharding(mesh, P("data", "model")), "b": NamedSharding(mesh, P())},
    )
    out = {}
    for name, tx in (("optix", optix.adam(1e-3)), ("optax", optax.adam(1e-3))):
        state = jax.jit(tx.init)(params)
        w = [x for x in jax.tree.leaves(state) if x.shape == (8, 4)][0]
        out[name] = {
            "eager": str(tx.init(params)[0].mu["w"].sharding if name == "optix" else ""),
            "jit": str(w.sharding),
        }
    return out


def _child_zero(mesh):
    import numpy as np

    from tests.cases import CASES

    n = mesh.shape["data"]
    rep = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(1)
    params0 = {
        "w1": jnp.asarray(rng.normal(size=(16, 32)) * 0.3, jnp.float32),
        "b1": jnp.zeros((32,), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(32, 8)) * 0.3, jnp.float32),
        "b2": jnp.zeros((8,), jnp.float32),
    }
    xs = jnp.asarray(rng.normal(size=(3, 4 * n, 16)), jnp.float32)
    ys = jnp.asarray(rng.normal(size=(3, 4 * n, 8)), jnp.float32)

    def loss(params, x, y):
        h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
        return jnp.mean((h @ params["w2"] + params["b2"][None, :] - y) ** 2)

    def make_step(tx, **jit_kwargs):
        def step(params, state, x, y):
            grads = jax.grad(loss)(params, x, y)
            updates, state = tx.update(grads, state, params)
            return optix.apply_updates(params, updates), state

        return jax.jit(step, **jit_kwargs)

    def train(step, params, state, shard_batch):
        for t in range(xs.shape[0]):
            x, y = xs[t], ys[t]
            if shard_batch:
                x, y = jax.device_put((x, y), batch_sharding)
            params, state = step(params, state, x, y)
        return params, state

    def close(a, b, atol=1e-6):
        return all(
            np.allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=atol)
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    def reference(tx):
        return train(make_step(tx), params0, tx.init(params0), shard_batch=False)

    out = {}
    tx = optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(1e-2, weight_decay=1e-3))
    ref_params, ref_state = reference(tx)

    # ZeRO through jit shardings
    zs = state_shardings(tx, params0, rep, zero_axis="data")
    params = jax.device_put(params0, rep)
    state = jax.jit(tx.init, out_shardings=zs)(params)
    dev = jax.devices()[0]
    per_device = sum(
        s.data.nbytes
        for x in jax.tree.leaves(state)
        for s in x.addressable_shards
        if s.device == dev
    )
    out["per_device_bytes"] = int(per_device)
    out["total_bytes"] = int(sum(x.nbytes for x in jax.tree.leaves(tx.init(params0))))
    moments = [x for x in jax.tree.leaves(state) if x.ndim > 0]
    out["moments_split"] = all(x.sharding.spec[0] == "data" for x in moments) and bool(moments)
    step = make_step(
        tx, in_shardings=(rep, zs, batch_sharding, batch_sharding), out_shardings=(rep, zs)
    )
    params, state = train(step, params, state, shard_batch=True)
    out["params_replicated"] = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(params))
    out["jit_shardings_equal"] = close(params, ref_params) and close(state, ref_state)

    # ZeRO through the wrapper: same numbers, state split after every step
    ztx = zero(tx, mesh)
    params = jax.device_put(params0, rep)
    with jax.set_mesh(mesh):  # jit with JAX's default explicit mesh axes needs the mesh in context
        state = jax.jit(ztx.init)(params)
        params, state = train(make_step(ztx), params, state, shard_batch=True)
    out["wrapper_equal"] = close(params, ref_params) and close(state, ref_state)
    out["wrapper_layout"] = all(
        x.sharding.is_equivalent_to(s, x.ndim)
        for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(zs), strict=True)
    )

    # every optimizer of the registry under the wrapper equals its unsharded run (all stepped by
    # one jitted function, to compile once)
    txs = [case.make() for case in CASES]
    ztxs = [zero(t, mesh) for t in txs]

    def many_step(transforms):
        def step(params, states, x, y):
            new_params, new_states = [], []
            for t, p, st in zip(transforms, params, states, strict=True):
                updates, st = t.update(jax.grad(loss)(p, x, y), st, p)
                new_params.append(optix.apply_updates(p, updates))
                new_states.append(st)
            return new_params, new_states

        return step

    def train_many(transforms, params, shard_batch):
        states = jax.jit(lambda p: [t.init(p) for t in transforms])(params)
        step = jax.jit(many_step(transforms))
        return train(step, [params] * len(transforms), states, shard_batch)[0]

    cases = {}
    ref_list = train_many(txs, params0, shard_batch=False)
    with jax.set_mesh(mesh):
        got_list = train_many(ztxs, jax.device_put(params0, rep), shard_batch=True)
    for case, got, want in zip(CASES, got_list, ref_list, strict=True):
        cases[case.name] = close(got, want, case.parallel_atol(xs.shape[0], 1e-6))
    out["cases"] = cases
    return out


def _child_checkpoint(mesh):
    """Save a ZeRO-split state with orbax, restore it into the same layout, continue exactly."""
    import shutil
    import tempfile

    import numpy as np
    import orbax.checkpoint as ocp

    rep = NamedSharding(mesh, P())
    rng = np.random.default_rng(2)
    host = {"w": rng.normal(size=(16, 4)).astype(np.float32), "b": np.zeros(3, np.float32)}
    grads = [
        jax.tree.map(lambda a, k=k: np.float32(0.1 * (k + 1)) * a + 0.01, host) for k in range(4)
    ]
    tx = optix.adamw(1e-2, weight_decay=1e-3)
    zs = state_shardings(tx, host, rep, zero_axis="data")

    @functools.partial(jax.jit, out_shardings=(rep, zs))
    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optix.apply_updates(params, updates), state

    def run(params, state, gs):
        for g in gs:
            params, state = step(params, state, g)
        return params, state

    params = jax.device_put(host, rep)
    start = (params, jax.jit(tx.init, out_shardings=zs)(params))
    want = run(*start, grads)
    half = run(*start, grads[:2])
    directory = tempfile.mkdtemp()
    try:
        path = directory + "/ckpt"
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path, {"params": half[0], "state": half[1]})
        checkpointer.wait_until_finished()
        shardings = {"params": jax.tree.map(lambda _: rep, host), "state": zs}
        target = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            {"params": half[0], "state": half[1]},
            shardings,
        )
        restored = checkpointer.restore(path, target)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    layout = all(
        x.sharding.is_equivalent_to(s, x.ndim)
        for x, s in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings), strict=True)
    )
    got = run(restored["params"], restored["state"], grads[2:])
    exact = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )
    return {"layout": layout, "exact": exact}


def _main() -> None:
    from tests._multidevice import emit

    assert jax.device_count() == DEVICES, jax.devices()
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=auto)
    mesh1d = jax.make_mesh((DEVICES,), ("data",))  # JAX's default axis types (explicit)
    mesh1d_auto = jax.make_mesh((DEVICES,), ("data",), axis_types=auto[:1])
    import sys
    import time

    out = {}
    for key, fn, m in (
        ("zero", _child_zero, mesh1d),
        ("plain_jit", _child_plain_jit, mesh),
        ("layout", _child_layout, mesh),
        ("checkpoint", _child_checkpoint, mesh1d_auto),
    ):
        start = time.perf_counter()
        out[key] = fn(m)
        print(f"{key}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
    emit(out)


if __name__ == "__main__":
    _main()
