"""Where ``optix.fuse`` pays: fused, plain optix and optax steps on trees of small and large leaves.

Run:  python benchmarks/fuse_threshold.py [--tiny | --quick] [--optimizer adam] [--parts sweep,trees]

Variants, all stepping the same tree of float32 params with ``params, state = step(params,
state, grads)`` jitted with params and state donated:

- ``optax``: the optax optimizer; ``optix``: the optix optimizer, unfused;
- ``fuse``: ``optix.fuse(tx)`` with its default ``pack_below`` (leaves below it packed, the others
  updated as they are);
- ``fuse all``: ``optix.fuse(tx, pack_below=None)``, every leaf packed (``fuse`` before the
  threshold existed);
- ``floor``: not an optimizer but the least work any packed Adam does when it takes and gives
  back the user's tree: concatenate the gradients, Adam's moments as two flat buffers (no bias
  correction), and one slice per leaf added to its param. Its ratios bound what ``fuse`` can
  reach on this backend.

Part ``sweep``: a fixed number of params split into equal leaves, for leaf sizes from a few
hundred elements to a few hundred thousand. Where ``fuse all`` stops beating ``optix`` is where
packing a leaf stops paying, and where ``fuse``'s default ``pack_below`` belongs. Part ``trees``:
400 leaves of 8 to 128x128 elements (sizes geometric, the larger ones 2-D, as in issue 14), 500
leaves of 33,554 params, GPT-2 small's tree and one flat array.

All variants of a tree are compiled one after the other (fresh ``jit`` each, compile time is
``lower().compile()``), then timed interleaved, one step of each in turn, so load from other
processes falls on all alike; the median step is reported. Ratios are against optax from the same
run. Fusions counts the fused kernels of the compiled step (a deterministic measure of the work
launched per step), state the number of arrays in the optimizer state. Nothing is written to
RESULTS.md; ``--tiny`` is a smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import optix

try:  # benchmarks/run.py holds the GPT-2 tree and the optimizer pairs
    from benchmarks.run import gpt2_shapes
    from benchmarks.run import pairs
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from run import gpt2_shapes  # type: ignore[no-redef]
    from run import pairs  # type: ignore[no-redef]

OPTIMIZERS = pairs(
    "adam", "adamw", "sgd+momentum", "clip+adamw"
)  # name -> (optix factory, optax factory)

VARIANTS: dict[str, Callable[[Callable[[], Any], Callable[[], Any]], Any]] = {
    "optax": lambda mine, theirs: theirs(),
    "optix": lambda mine, theirs: mine(),
    "fuse": lambda mine, theirs: optix.fuse(mine()),
    "fuse all": lambda mine, theirs: optix.fuse(mine(), pack_below=None),
    "floor": lambda mine, theirs: packed_floor(),
}


def packed_floor() -> optax.GradientTransformation:
    """The ``floor`` variant: Adam's moments (without bias correction) as two flat buffers fed by
    the concatenated gradients, and the update cut back into leaves: the pack and unpack of any
    fused Adam step around one flat kernel."""

    def init(params):
        n = sum(x.size for x in jax.tree.leaves(params))
        return jnp.zeros(n, jnp.float32), jnp.zeros(n, jnp.float32)

    def update(updates, state, params=None):
        leaves, treedef = jax.tree.flatten(updates)
        g = jnp.concatenate([x.ravel() for x in leaves])
        m = 0.9 * state[0] + 0.1 * g
        v = 0.999 * state[1] + 0.001 * g * g
        u = -1e-3 * m / (jnp.sqrt(v) + 1e-8)
        out, offset = [], 0
        for x in leaves:
            out.append(u[offset : offset + x.size].reshape(x.shape))
            offset += x.size
        return treedef.unflatten(out), (m, v)

    return optax.GradientTransformation(init, update)


# mode -> (sweep total params, sweep leaf sizes)
SWEEP = {
    "full": (2**21, [2**k for k in range(10, 19)]),
    "quick": (2**19, [2**k for k in range(9, 17, 2)]),
    "tiny": (2**9, [2**6]),
}


def geometric_shapes(n: int, smallest: int = 8, largest: int = 128 * 128) -> dict:
    """``n`` leaf shapes, sizes geometric from ``smallest`` to ``largest`` elements; sizes of at
    least 64 are 2-D with 8 rows, and the last is 128x128 (the tree of issue 14)."""
    out: dict[str, tuple[int, ...]] = {}
    for i in range(n):
        size = round(smallest * (largest / smallest) ** (i / max(n - 1, 1)))
        if i == n - 1 and largest == 128 * 128:
            out[f"p{i:04d}"] = (128, 128)
        else:
            out[f"p{i:04d}"] = (8, size // 8) if size >= 64 else (size,)
    return out


def trees(mode: str) -> dict[str, dict]:
    if mode == "tiny":
        return {"small leaves": geometric_shapes(6, 8, 512), "flat": {"w": (2**16,)}}
    if mode == "quick":
        return {
            "400 small leaves": geometric_shapes(400),
            "500 leaves": {f"p{i:03d}": (4194,) for i in range(500)},
            "gpt2": gpt2_shapes(8192, 256, 256, 4),
            "flat": {"w": (2**22,)},
        }
    return {
        "400 small leaves": geometric_shapes(400),
        "500 leaves": {f"p{i:03d}": (33554,) for i in range(500)},
        "gpt2": gpt2_shapes(50257, 1024, 768, 12),
        "flat": {"w": (2**24,)},
    }


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def fusions(compiled: Any) -> int:
    """The fused kernels launched by one call of ``compiled`` (fusion calls in its entry)."""
    text = compiled.as_text()
    entry = text[text.index("\nENTRY ") :]
    return sum(" fusion(" in line for line in entry.splitlines())


def compare(shapes: dict, optimizer: str, variants: list[str], steps: int, warmup: int) -> dict:
    """``{variant: {step_ms, compile_s, fusions, state}}`` on a tree of ``shapes``."""
    mine, theirs = OPTIMIZERS[optimizer]
    params0 = jax.tree.map(lambda s: jnp.full(s, 0.01, jnp.float32), shapes, is_leaf=_is_shape)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params0)
    runs: dict[str, list] = {}
    out: dict[str, dict] = {}
    for name in variants:
        tx = VARIANTS[name](mine, theirs)

        def step(params, state, grads, tx=tx):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        # optax relies on standard dtype promotion; optix runs under the user's setting
        ctx = jax.numpy_dtype_promotion("standard") if name == "optax" else contextlib.nullcontext()
        with ctx:
            state = jax.jit(tx.init)(params0)
            t0 = time.perf_counter()
            compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params0, state, grads).compile()
            seconds = time.perf_counter() - t0
        params = jax.tree.map(jnp.copy, params0)
        for _ in range(warmup):
            params, state = compiled(params, state, grads)
        jax.block_until_ready((params, state))
        runs[name] = [compiled, params, state, []]
        out[name] = {
            "compile_s": seconds,
            "fusions": fusions(compiled),
            "state": len(jax.tree.leaves(state)),
        }
    for _ in range(steps):
        for name in variants:
            compiled, params, state, times = runs[name]
            t0 = time.perf_counter()
            params, state = compiled(params, state, grads)
            jax.block_until_ready((params, state))
            times.append(time.perf_counter() - t0)
            runs[name][1:3] = [params, state]
    for name in variants:
        out[name]["step_ms"] = 1e3 * statistics.median(runs[name][3])
    del runs
    gc.collect()
    return out


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def sweep_table(total: int, sizes: list[int], optimizer: str, args: argparse.Namespace) -> None:
    names = [v for v in args.variants if v != "fuse"]  # equal leaves: fuse is optix or fuse all
    print(
        f"\n### Leaf size sweep: {total:,} float32 params in equal leaves, {optimizer}\n\n"
        "| leaf size | leaves | "
        + " | ".join(f"{v} ms" for v in names)
        + " | fuse all vs optix | "
        + " | ".join(f"{v} step vs optax" for v in names if v != "optax")
        + " | "
        + " | ".join(f"{v} compile s" for v in names)
        + " |"
    )
    print("|" + "---|" * (2 + 2 * len(names) + len(names)))
    for size in sizes:
        n = total // size
        r = compare({f"p{i:05d}": (size,) for i in range(n)}, optimizer, names, args.steps, 2)
        ref = r.get("optax", {}).get("step_ms")
        mine = r.get("optix", {}).get("step_ms")
        packed = r.get("fuse all", {}).get("step_ms")
        print(
            f"| {size:,} | {n} | "
            + " | ".join(f"{r[v]['step_ms']:.2f}" for v in names)
            + f" | {_ratio(packed, mine) if packed else 'n/a'} | "
            + " | ".join(_ratio(r[v]["step_ms"], ref) for v in names if v != "optax")
            + " | "
            + " | ".join(f"{r[v]['compile_s']:.2f}" for v in names)
            + " |",
            flush=True,
        )


def trees_table(mode: str, optimizer: str, args: argparse.Namespace) -> None:
    print(
        f"\n### Trees, {optimizer} (fuse: pack_below={optix.fuse.__kwdefaults__['pack_below']})"
        "\n\n| tree | leaves | params | variant | step ms | step vs optax | compile s "
        "| compile vs optax | fusions | state arrays |"
    )
    print("|" + "---|" * 10)
    for tree, shapes in trees(mode).items():
        if args.trees and tree not in args.trees:
            continue
        leaves = jax.tree.leaves(shapes, is_leaf=_is_shape)
        n = sum(int(jnp.prod(jnp.array(s))) for s in leaves)
        r = compare(shapes, optimizer, args.variants, args.steps, 2)
        ref = r.get("optax", {})
        for v, x in r.items():
            print(
                f"| {tree} | {len(leaves)} | {n:,} | {v} | {x['step_ms']:.2f} "
                f"| {_ratio(x['step_ms'], ref.get('step_ms'))} | {x['compile_s']:.2f} "
                f"| {_ratio(x['compile_s'], ref.get('compile_s'))} | {x['fusions']} "
                f"| {x['state']} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="smoke test: tiny trees, 2 steps")
    size.add_argument("--quick", action="store_true", help="smaller trees, fewer steps")
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    parser.add_argument("--parts", default="sweep,trees", help="comma-separated: sweep, trees")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--trees", default="", help="comma-separated tree names (default all)")
    parser.add_argument("--sizes", default="", help="comma-separated sweep leaf sizes")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    args = parser.parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    args.trees = [t for t in args.trees.split(",") if t]
    if args.steps is None:
        args.steps = {"tiny": 2, "quick": 10, "full": 30}[mode]
    total, sizes = SWEEP[mode]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{jax.devices()[0].device_kind}; median of {args.steps} interleaved donated steps")
    parts = args.parts.split(",")
    if "sweep" in parts:
        sweep_table(total, sizes, args.optimizer, args)
    if "trees" in parts:
        trees_table(mode, args.optimizer, args)


if __name__ == "__main__":
    main()
