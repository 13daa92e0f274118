"""One process of the two-process data-parallel run driven by ``tests/test_multihost.py``.

Usage: ``python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR``. Each process has
``LOCAL_DEVICES`` CPU devices; together they form one global mesh over which the batch and the
optimizer state (ZeRO-1) are split while the params are replicated. Each process writes the final
params it holds to ``OUT_DIR/params_<id>.npz``. The model, data and optimizer are defined here so
that the test can run the same training on one process as the reference.
"""

from __future__ import annotations

import os
import sys

LOCAL_DEVICES = 2
STEPS = 4
BATCH = 16


def problem():
    """Initial params, the global batches and the loss (NumPy data, the same in every process)."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    params = {
        "w1": (rng.normal(size=(8, 16)) * 0.4).astype(np.float32),
        "b1": np.zeros((16,), np.float32),
        "w2": (rng.normal(size=(16, 4)) * 0.4).astype(np.float32),
        "b2": np.zeros((4,), np.float32),
    }
    xs = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
    ys = rng.normal(size=(STEPS, BATCH, 4)).astype(np.float32)

    def loss(params, x, y):
        h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
        return jnp.mean((h @ params["w2"] + params["b2"][None, :] - y) ** 2)

    return params, xs, ys, loss


def optimizer():
    import optix

    return optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(1e-2, weight_decay=1e-3))


def train_single():
    """The reference: the same steps on one device with the whole batch."""
    import jax
    import numpy as np

    import optix

    params, xs, ys, loss = problem()
    tx = optimizer()

    @jax.jit
    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return optix.apply_updates(params, updates), state

    state = tx.init(params)
    for t in range(STEPS):
        params, state = step(params, state, xs[t], ys[t])
    return {k: np.asarray(v) for k, v in params.items()}


def main(process_id: int, num_processes: int, port: int, out_dir: str) -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={LOCAL_DEVICES}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=600,
    )
    import optix
    from optix.sharding import state_shardings

    assert jax.process_count() == num_processes
    assert jax.device_count() == num_processes * LOCAL_DEVICES, jax.devices()
    auto = (jax.sharding.AxisType.Auto,)
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=auto)
    rep = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))

    def global_array(host, sharding):
        # every process holds the full NumPy value; each device takes its slice of it
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    host_params, xs, ys, loss = problem()
    tx = optimizer()
    params = {k: global_array(v, rep) for k, v in host_params.items()}
    zero = state_shardings(tx, params, rep, zero_axis="data")

    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return optix.apply_updates(params, updates), state

    step = jax.jit(step, in_shardings=(rep, zero, batch, batch), out_shardings=(rep, zero))
    state = jax.jit(tx.init, out_shardings=zero)(params)
    for t in range(STEPS):
        params, state = step(params, state, global_array(xs[t], batch), global_array(ys[t], batch))

    mu = state[1][0].mu["w1"]  # adamw's first moment of w1: split over all 4 devices
    local_rows = sum(s.data.shape[0] for s in mu.addressable_shards)
    np.savez(
        os.path.join(out_dir, f"params_{process_id}.npz"),
        local_mu_rows=np.int64(local_rows),
        global_mu_rows=np.int64(mu.shape[0]),
        **{k: np.asarray(v.addressable_data(0)) for k, v in params.items()},
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
