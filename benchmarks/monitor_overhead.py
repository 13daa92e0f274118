"""What ``optix.monitor`` adds to a training step: the 500-leaf tree, AdamW, donated and jitted.

Run:  python benchmarks/monitor_overhead.py [--leaves 500] [--total 16000000] [--rounds 5]
      [--steps 5] [--hlo-leaves 20]

Every variant is compiled once, then timed in ``--rounds`` interleaved rounds of ``--steps``
steps each, so that a busy machine slows every variant alike. Per variant it prints the median
step (wall clock), the median CPU time of this process per step (less sensitive to other
processes on a shared machine), the minor page faults per step (a buffer that XLA allocates
afresh on every step faults in each of its 4 KiB pages) and, from the compiled HLO of the same
step on a ``--hlo-leaves``-leaf tree, the kernels per leaf (loop fusions, and reductions, which
XLA:CPU runs as YNNPACK custom fusions) and the
params leaves copied before their in-place update. Ratios are against plain AdamW from the same
run; the issue's target is ``monitor`` <= 1.05x.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import optix

try:  # benchmarks/run.py, whose tree shapes this shares
    from benchmarks import run
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import run  # type: ignore[no-redef]


def variants() -> dict[str, optix.GradientTransformation]:
    adamw = optix.adamw(1e-3, weight_decay=0.1)
    clip = optix.clip_by_global_norm(1.0)
    groups = {"first": "w0*", "rest": "w[1-9]*"}
    return {
        "adamw": adamw,
        "monitor(adamw)": optix.monitor(adamw),
        "metrics=skipped_steps": optix.monitor(adamw, metrics="skipped_steps"),
        "metrics=grad_norm": optix.monitor(adamw, metrics="grad_norm"),
        "metrics=param_norm": optix.monitor(adamw, metrics="param_norm"),
        "metrics=grad_norm,param_norm": optix.monitor(adamw, metrics=("grad_norm", "param_norm")),
        "metrics=update_norm": optix.monitor(adamw, metrics="update_norm"),
        "monitor(adamw, 2 groups)": optix.monitor(adamw, groups=groups),
        "chain(clip, adamw)": optix.chain(clip, adamw),
        "monitor(adamw, clip=clip)": optix.monitor(adamw, clip=clip),
    }


def _step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def _trees(leaves: int, total: int):
    shapes = run.leaves_shapes(leaves, total)
    params = {f"w{i}": jnp.full(s, 0.01, jnp.float32) for i, s in enumerate(shapes.values())}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 1e-3, p.dtype), params)
    return params, grads


def hlo_counts(tx: optix.GradientTransformation, leaves: int) -> tuple[float, float, int]:
    """(loop fusions per leaf, reductions per leaf, params leaves copied) in the compiled step."""
    params, grads = _trees(leaves, leaves * 100_000)
    text = _step(tx).lower(params, tx.init(params), grads).compile().as_text()
    entry = text[text.index("\nENTRY") :]
    loops = entry.count("kind=kLoop")
    reductions = entry.count("kind=kCustom") + len(re.findall(r"= f32\[\] reduce\(", entry))
    copies = len(re.findall(r"copy\(%params", entry))
    return loops / leaves, reductions / leaves, copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=500)
    parser.add_argument("--total", type=int, default=16_000_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hlo-leaves", type=int, default=20)
    args = parser.parse_args()
    params, grads = _trees(args.leaves, args.total)
    txs = variants()
    runs = {}
    for name, tx in txs.items():
        p = jax.tree.map(jnp.copy, params)  # the step donates its params and state
        compiled = _step(tx).lower(p, tx.init(p), grads).compile()
        carry = [p, tx.init(p)]
        for _ in range(2):  # warm-up
            carry = list(compiled(*carry, grads))
        jax.block_until_ready(carry)
        runs[name] = (compiled, carry)
    wall: dict[str, list[float]] = {name: [] for name in txs}
    cpu: dict[str, list[float]] = {name: [] for name in txs}
    faults: dict[str, list[int]] = {name: [] for name in txs}
    for _ in range(args.rounds):
        for name, (compiled, carry) in runs.items():
            for _ in range(args.steps):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                c0, t0 = time.process_time(), time.perf_counter()
                carry[:] = compiled(*carry, grads)
                jax.block_until_ready(carry)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    base_wall, base_cpu = statistics.median(wall["adamw"]), statistics.median(cpu["adamw"])
    print(f"{args.leaves} float32 leaves, {args.total:,} params, {jax.devices()[0].device_kind}")
    print(
        "| variant | step ms | vs adamw | CPU ms/step | vs adamw | page faults/step "
        f"| loop fusions/leaf | reductions/leaf | params copied (of {args.hlo_leaves}) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, tx in txs.items():
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        loops, reductions, copies = hlo_counts(tx, args.hlo_leaves)
        print(
            f"| {name} | {w * 1e3:.1f} | {w / base_wall:.2f}x | {c * 1e3:.1f} | "
            f"{c / base_cpu:.2f}x | {statistics.median(faults[name]):.0f} | {loops:.2f} | "
            f"{reductions:.2f} | {copies} |"
        )


if __name__ == "__main__":
    main()
