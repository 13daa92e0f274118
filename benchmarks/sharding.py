"""Per-device optimizer-state memory and step time, data-parallel, plain vs ZeRO-1; with
``--matrix``, the per-device flops of the matrix optimizers' work, repeated vs split over devices.

Run:  python benchmarks/sharding.py [--devices 8] [--repeats 20]
      python benchmarks/sharding.py --matrix [--devices 8] [--size 64] [--count 16]

On a CPU-only machine it re-executes itself with ``--xla_force_host_platform_device_count`` so
that it sees ``--devices`` virtual devices (they share the host's cores: step times show the cost
of the extra collectives, not a speed-up). On GPUs/TPUs it uses the real devices. For each device
count (1, 2, 4, ... up to ``--devices``) it trains an MLP with Adam on a batch split over the
devices, with the optimizer state either replicated ("plain") or split over the data axis
("zero", :func:`optix.sharding.state_shardings` with ``zero_axis``).

``--matrix`` compiles one update step of Muon, NorMuon, Shampoo (blocks of half the side), SOAP
and PSGD Kron on ``--count`` matrices of ``--size`` x ``--size`` (all but four as 2-D leaves, four
as one stacked leaf; for PSGD Kron, all 2-D) and reads the per-device flops from the compiled step's cost analysis: ZeRO with the
matrix work repeated on every device (``split_matrix_work=False``) vs split (the default), and
params split over a model axis without and with :func:`optix.sharding.distribute_matrices`. On CPU
the eigendecompositions are LAPACK custom calls the cost analysis does not count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _reexec_with_devices(devices: int) -> None:
    flag = f"--xla_force_host_platform_device_count={devices}"
    if flag in os.environ.get("XLA_FLAGS", ""):
        return
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--matrix", action="store_true", help="matrix-work flops instead")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=16)
    args = parser.parse_args()

    import jax

    if jax.default_backend() == "cpu" and jax.device_count() < args.devices:
        _reexec_with_devices(args.devices)
    if args.matrix:
        matrix_flops(args.devices, args.size, args.count)
        return
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import optix
    from optix.sharding import state_shardings

    width = args.width
    rng = np.random.default_rng(0)
    params0 = {
        "w1": jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width), jnp.float32),
        "b1": jnp.zeros((width,), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width), jnp.float32),
        "b2": jnp.zeros((width,), jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(64, width)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(64, width)), jnp.float32)

    def loss(params, x, y):
        h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
        return jnp.mean((h @ params["w2"] + params["b2"][None, :] - y) ** 2)

    tx = optix.adam(1e-3)

    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return optix.apply_updates(params, updates), state

    counts = [n for n in (1, 2, 4, 8, 16, 32) if n <= min(args.devices, jax.device_count())]
    print(
        f"backend={jax.default_backend()}  params={sum(p.size for p in jax.tree.leaves(params0))}"
    )
    print(f"{'devices':>7} {'layout':>6} {'state KiB/device':>17} {'step ms':>9}")
    for n in counts:
        auto = (jax.sharding.AxisType.Auto,)
        mesh = jax.make_mesh((n,), ("data",), axis_types=auto, devices=jax.devices()[:n])
        rep = NamedSharding(mesh, P())
        batch = NamedSharding(mesh, P("data"))
        xb, yb = jax.device_put((x, y), batch)
        for layout in ("plain", "zero"):
            shardings = state_shardings(
                tx, params0, rep, zero_axis="data" if layout == "zero" else None
            )
            # from host copies: donation must not delete params0
            params = jax.device_put(jax.tree.map(np.asarray, params0), rep)
            state = jax.jit(tx.init, out_shardings=shardings)(params)
            jstep = jax.jit(
                step,
                in_shardings=(rep, shardings, batch, batch),
                out_shardings=(rep, shardings),
                donate_argnums=(0, 1),
            )
            dev = mesh.devices.flat[0]
            per_device = sum(
                s.data.nbytes
                for leaf in jax.tree.leaves(state)
                for s in leaf.addressable_shards
                if s.device == dev
            )
            params, state = jstep(params, state, xb, yb)  # compile
            jax.block_until_ready(params)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                params, state = jstep(params, state, xb, yb)
                jax.block_until_ready(params)
                times.append(time.perf_counter() - start)
            ms = 1e3 * statistics.median(times)
            print(f"{n:>7} {layout:>6} {per_device / 1024:>17.1f} {ms:>9.2f}")


def matrix_flops(devices: int, size: int, count: int) -> None:
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import optix
    from optix.sharding import distribute_matrices
    from optix.sharding import zero

    spec = {"s": optix.MatrixSpec(batch_axes=(0,))}
    params = {f"w{i}": jnp.ones((size, size)) for i in range(count - 4)}
    params["s"] = jnp.ones((4, size, size))
    params["b"] = jnp.ones((size,))
    optimizers = {
        "muon": optix.muon(0.02, matrix_spec=spec),
        "normuon": optix.normuon(0.02, matrix_spec=spec),
        "shampoo": optix.shampoo(0.1, matrix_spec=spec, block_size=size // 2),
        "shampoo (eigenvalue-corrected)": optix.shampoo(
            0.1, matrix_spec=spec, block_size=size // 2, preconditioner="eigenvalue_corrected"
        ),
        "soap": optix.soap(0.01, matrix_spec=spec, precondition_frequency=1),
        "psgd_kron": optix.psgd_kron(0.01),
    }
    # psgd_kron takes leaves of at most two axes: the stack as four 2-D leaves
    flat = {k: v for k, v in params.items() if k != "s"}
    flat.update({f"x{i}": jnp.ones((size, size)) for i in range(4)})
    data = jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices])
    model = jax.make_mesh((devices,), ("model",), devices=jax.devices()[:devices])

    def flops(tx, mesh, params):
        with jax.set_mesh(mesh):
            state = jax.jit(tx.init)(params)
            step = jax.jit(lambda p, s, g: tx.update(g, s, p)).lower(params, state, params)
            return step.compile().cost_analysis()["flops"]

    def layouts(params):
        replicated = jax.device_put(params, NamedSharding(data, P()))
        split = {
            k: jax.device_put(x, NamedSharding(model, P(*[None] * (x.ndim - 1), "model")))
            for k, x in params.items()
        }
        return replicated, split

    print(f"{count} matrices of {size} x {size} on {devices} devices; MFLOP per device per step")
    print(f"{'optimizer':>9} {'layout':>13} {'repeated':>9} {'split':>9} {'ratio':>6}")
    for name, tx in optimizers.items():
        replicated, split = layouts(flat if name == "psgd_kron" else params)
        for layout, mesh, p, off, on in (
            ("zero", data, replicated, zero(tx, data, split_matrix_work=False), zero(tx, data)),
            ("model-split", model, split, tx, distribute_matrices(tx, model)),
        ):
            a, b = flops(off, mesh, p), flops(on, mesh, p)
            print(f"{name:>9} {layout:>13} {a / 1e6:>9.2f} {b / 1e6:>9.2f} {b / a:>6.3f}")


if __name__ == "__main__":
    main()
