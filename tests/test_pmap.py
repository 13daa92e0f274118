"""Every optimizer inside ``jax.pmap`` with gradients averaged by ``lax.pmean``.

Data parallelism over ``N`` devices, each with its own slice of the batch, after ``pmean`` of the
per-device gradients is the same computation as one device on the whole batch (the gradient of the
mean loss, since the slices are equal in size). So ``N`` replicas stepping in lockstep must equal
the single-device run, and stay identical to each other. The checks run in a child process that sees
4 CPU devices (this file run as a script); the test asserts on its report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DEVICES = 4
STEPS = 4


def test_pmap_matches_single_device():
    from tests._multidevice import run_child

    report = run_child(Path(__file__), devices=DEVICES)
    from tests.cases import IDS

    assert sorted(report["cases"]) == sorted(IDS + ["clip_by_global_norm+adam"])
    bad = {name: r for name, r in report["cases"].items() if not r["ok"]}
    assert not bad, bad
    # clipping was active in the clip case (global norm of the averaged gradient above max_norm)
    assert report["clip_norm_before"] > report["clip_max_norm"]
    # the code blocks of docs/multi_device.md run, and the pmap example fits its data
    assert report["docs_blocks"] >= 3
    assert report["docs_pmap_w"] == pytest.approx([1.0, -2.0, 0.5], abs=0.05)


def _main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import optix
    from tests._multidevice import emit
    from tests.cases import CASES

    assert jax.device_count() == DEVICES, jax.devices()
    rng = np.random.default_rng(0)
    params0 = {
        "w": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(STEPS, DEVICES * 4, 6)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(STEPS, DEVICES * 4, 3)), jnp.float32)

    def loss(params, xb, yb):
        pred = jnp.tanh(xb @ params["w"] + params["b"])
        return jnp.mean((pred - yb) ** 2)

    def single(tx):
        @jax.jit
        def step(params, state, xb, yb):
            grads = jax.grad(loss)(params, xb, yb)
            updates, state = tx.update(grads, state, params)
            return optix.apply_updates(params, updates), state

        params, state = params0, tx.init(params0)
        for t in range(STEPS):
            params, state = step(params, state, x[t], y[t])
        return params

    def parallel(tx):
        def step(params, state, xb, yb):
            grads = jax.lax.pmean(jax.grad(loss)(params, xb, yb), axis_name="devices")
            updates, state = tx.update(grads, state, params)
            return optix.apply_updates(params, updates), state

        pstep = jax.pmap(step, axis_name="devices")
        replicate = lambda tree: jax.tree.map(  # noqa: E731
            lambda a: jnp.broadcast_to(a, (DEVICES, *a.shape)), tree
        )
        params, state = replicate(params0), replicate(tx.init(params0))
        for t in range(STEPS):
            shard = lambda a: a.reshape(DEVICES, -1, *a.shape[1:])  # noqa: E731
            params, state = pstep(params, state, shard(x[t]), shard(y[t]))
        return params

    def compare(tx, atol=2e-6):
        want = single(tx)
        got = parallel(tx)
        ok = True
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            g = np.asarray(g)
            # every replica holds the same params ...
            ok &= bool(np.all(g == g[:1]))
            # ... equal to one device on the whole batch, up to the order of the float sums
            ok &= bool(np.allclose(g[0], np.asarray(w), rtol=2e-5, atol=atol))
        return {"ok": ok}

    results = {case.name: compare(case.make(), case.parallel_atol(STEPS, 2e-6)) for case in CASES}
    max_norm = 0.05
    tx = optix.chain(optix.clip_by_global_norm(max_norm), optix.adam(1e-2))
    results["clip_by_global_norm+adam"] = compare(tx)
    grads = jax.grad(loss)(params0, x[0], y[0])

    doc = (Path(__file__).resolve().parent.parent / "docs" / "multi_device.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```python\n")[1:]]

    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/multi_device.md", "exec"), namespace)  # noqa: S102 - our docs
        if "pparams" in namespace and "docs_pmap_w" not in namespace:
            namespace["docs_pmap_w"] = [float(v) for v in namespace["params"]["w"][:, 0]]
    emit(
        {
            "cases": results,
            "clip_norm_before": float(optix._tree.global_norm(grads)),
            "clip_max_norm": max_norm,
            "docs_blocks": len(blocks),
            "docs_pmap_w": namespace["docs_pmap_w"],
        }
    )


if __name__ == "__main__":
    _main()
