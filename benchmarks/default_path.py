"""The default path: an unfused optix step on an ordinary tree of leaves, beside optax's.

Run:  python benchmarks/default_path.py [--tiny] [--leaves N] [--steps N] [--optimizers a,b]

This is the path users take with flax's ``TrainState``, ``nnx.Optimizer`` or an equinox loop:
no ``fuse``, no packing, ``params, state = step(params, state, grads)`` jitted with params and
state donated. The tree is ``--leaves`` float32 leaves whose sizes grow geometrically from 8 to
128x128 elements (the larger ones 2-D), as in issue 14. For each optimizer it compiles optix's
step and optax's step alternately (``--compiles`` times each, fresh ``jit`` each time, the median
reported), then times them interleaved, one optix step then one optax step, ``--steps`` times
(median reported), so that load from other processes falls on both alike. It prints, per
optimizer and library: step ms, compile s, the optix/optax ratios, the number of instructions and
of fusions in the optimised HLO of the compiled step, and the number of state leaves.

``--tiny`` (10 leaves, 2 steps, one compile) is a smoke test. Nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

try:  # benchmarks/run.py holds the optimizer pairs
    from benchmarks.run import pairs
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from run import pairs  # type: ignore[no-redef]

OPTIMIZERS = pairs("adam", "adamw", "sgd+momentum")  # name -> (optix factory, optax factory)


def shapes(n: int, smallest: int = 8, largest: int = 128 * 128) -> dict[str, tuple[int, ...]]:
    """``n`` leaf shapes, sizes geometric from ``smallest`` to ``largest`` elements; sizes of at
    least 64 are 2-D with 8 rows, and the largest is 128x128."""
    out = {}
    for i in range(n):
        size = round(smallest * (largest / smallest) ** (i / max(n - 1, 1)))
        if i == n - 1 and largest == 128 * 128:
            shape: tuple[int, ...] = (128, 128)
        elif size >= 64:
            shape = (8, size // 8)
        else:
            shape = (size,)
        out[f"p{i:04d}"] = shape
    return out


def hlo_counts(compiled: Any) -> tuple[int, int]:
    """(instructions, fusion instructions) in the optimised HLO of a compiled step, counting every
    computation (the fusions' bodies included): a heavier kernel shows as more instructions."""
    text = compiled.as_text()
    instructions = fusions = 0
    for line in text.splitlines():
        m = re.match(r"\s*(ROOT\s+)?%?[\w.\-]+\s*=\s*\S.*?\s([\w\-]+)\(", line)
        if m:
            instructions += 1
            if m.group(2) == "fusion":
                fusions += 1
    return instructions, fusions


def build(tx: Any, params: Any, grads: Any) -> tuple[Callable, Any, float]:
    """(compiled donated step, its initial state, compile seconds) for ``tx``."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = jax.jit(tx.init)(params)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    return compiled, state, time.perf_counter() - t0


def run(name: str, n_leaves: int, steps: int, compiles: int, warmup: int) -> dict[str, dict]:
    make_optix, make_optax = OPTIMIZERS[name]
    tree = shapes(n_leaves)
    params0 = {k: jnp.full(s, 0.01, jnp.float32) for k, s in tree.items()}
    grads = {k: jnp.full(s, 1e-3, jnp.float32) for k, s in tree.items()}
    makers = {"optax": make_optax, "optix": make_optix}
    compile_times: dict[str, list[float]] = {k: [] for k in makers}
    built: dict[str, Any] = {}
    for _ in range(compiles):
        for lib, make in makers.items():
            # optax relies on standard dtype promotion; optix runs under the user's setting
            ctx = (
                jax.numpy_dtype_promotion("standard")
                if lib == "optax"
                else contextlib.nullcontext()
            )
            with ctx:
                compiled, state, seconds = build(make(), params0, grads)
            compile_times[lib].append(seconds)
            built[lib] = (compiled, state)
    runs = {}
    for lib, (compiled, state) in built.items():
        params = jax.tree.map(jnp.copy, params0)
        state = jax.tree.map(jnp.copy, state)
        for _ in range(warmup):
            params, state = compiled(params, state, grads)
        jax.block_until_ready((params, state))
        runs[lib] = [compiled, params, state, []]
    for _ in range(steps):
        for lib in makers:
            compiled, params, state, times = runs[lib]
            t0 = time.perf_counter()
            params, state = compiled(params, state, grads)
            jax.block_until_ready((params, state))
            times.append(time.perf_counter() - t0)
            runs[lib][1:3] = [params, state]
    out = {}
    for lib in makers:
        compiled, _, state, times = runs[lib]
        instructions, fusions = hlo_counts(compiled)
        out[lib] = {
            "step_ms": 1e3 * statistics.median(times),
            "compile_s": statistics.median(compile_times[lib]),
            "instructions": instructions,
            "fusions": fusions,
            "state_leaves": len(jax.tree.leaves(state)),
        }
    return out


HEADER = (
    "| optimizer | library | step ms | step vs optax | compile s | compile vs optax "
    "| HLO instructions | fusions | state leaves |"
)


def rows(name: str, result: dict[str, dict]) -> list[str]:
    ref = result["optax"]
    lines = []
    for lib in ("optax", "optix"):
        r = result[lib]
        lines.append(
            f"| {name} | {lib} | {r['step_ms']:.2f} | {r['step_ms'] / ref['step_ms']:.2f}x "
            f"| {r['compile_s']:.2f} | {r['compile_s'] / ref['compile_s']:.2f}x "
            f"| {r['instructions']} | {r['fusions']} | {r['state_leaves']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke test: 10 leaves, 2 steps")
    parser.add_argument("--leaves", type=int, default=400)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compiles", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    args = parser.parse_args(argv)
    if args.tiny:
        args.leaves, args.steps, args.compiles, args.warmup = 10, 2, 1, 1
    names = [n for n in args.optimizers.split(",") if n]
    for n in names:
        if n not in OPTIMIZERS:
            parser.error(f"unknown optimizer {n!r}; known: {', '.join(OPTIMIZERS)}")
    total = sum(int(jnp.prod(jnp.array(s))) for s in shapes(args.leaves).values())
    print(
        f"{args.leaves} float32 leaves, {total} params, {jax.devices()[0].platform}; median of "
        f"{args.steps} interleaved donated steps, median of {args.compiles} compiles",
        flush=True,
    )
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for name in names:
        for line in rows(name, run(name, args.leaves, args.steps, args.compiles, args.warmup)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
