"""What ``optix.monitor`` adds to a training step: the 500-leaf tree, AdamW, donated and jitted.

Run:  python benchmarks/monitor_overhead.py [--leaves 500] [--total 16000000] [--rounds 3]

Each variant is timed in ``--rounds`` interleaved rounds (median step of each round, then the
median over rounds), so that a busy machine slows every variant alike. Ratios are against plain
AdamW from the same run; the issue's target is ``monitor`` <= 1.05x.
"""

from __future__ import annotations

import argparse
import gc
import statistics

import jax
import jax.numpy as jnp

import optix

try:  # benchmarks/run.py, whose timing harness this shares
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
        "monitor(adamw, 2 groups)": optix.monitor(adamw, groups=groups),
        "chain(clip, adamw)": optix.chain(clip, adamw),
        "monitor(adamw, clip=clip)": optix.monitor(adamw, clip=clip),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=500)
    parser.add_argument("--total", type=int, default=16_000_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shapes = run.leaves_shapes(args.leaves, args.total)
    params = {f"w{i}": jnp.full(s, 0.01, jnp.float32) for i, s in enumerate(shapes.values())}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 1e-3, p.dtype), params)
    txs = variants()
    steps: dict[str, list[float]] = {name: [] for name in txs}
    compiles: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, tx in txs.items():
            step_s, compile_s, _ = run.measure(tx, params, grads, args.steps, 3)
            steps[name].append(step_s)
            compiles.setdefault(name, compile_s)
            gc.collect()
    base = statistics.median(steps["adamw"])
    clip_base = statistics.median(steps["chain(clip, adamw)"])
    print(f"{args.leaves} float32 leaves, {args.total:,} params, {jax.devices()[0].device_kind}")
    print("| variant | step ms | vs adamw | vs chain(clip, adamw) | compile s |")
    print("|---|---|---|---|---|")
    for name in txs:
        s = statistics.median(steps[name])
        vs_clip = f"{s / clip_base:.3f}x" if "clip" in name else ""
        print(f"| {name} | {s * 1e3:.2f} | {s / base:.3f}x | {vs_clip} | {compiles[name]:.2f} |")


if __name__ == "__main__":
    main()
