"""L-BFGS compile and step time against the leaf count: optix beside optax, in the same process.

Run:  python benchmarks/lbfgs.py [--tiny] [--leaves 25,50,100,150] [--per 1000] [--steps 20]
                                 [--linesearch none|zoom]

The tree is ``--leaves`` float32 vectors of ``--per`` params each; the objective a diagonal convex
quadratic ``f(x) = 0.5 sum c x^2`` (``c`` in [0.5, 2]), so every curvature pair has ``s.y > 0``
and both libraries fill their memory (with fixed gradients ``y = 0``: optix skips the pairs and
optax divides by zero). One step is ``grad -> lbfgs update -> apply_updates``, jitted with params
and state donated. With ``--linesearch none`` (default; the registry's case, what
``benchmarks/registry.py`` times) the step length is the learning rate; with ``zoom`` both run
their default zoom line search, which evaluates ``f`` inside the step.

For each leaf count it prints, optix / optax:

- compile: ``jax.jit(step).lower(...).compile()`` on a fresh ``jit``, the two libraries compiled
  one after the other;
- step: the median of ``--steps`` donated steps after warm-up, the two timed alternately (one
  step each in turn), so both see the same load;
- HLO: the instructions and fusions of the optimised module (deterministic, unlike the times).

Then the growth of each from the smallest to the largest tree against the growth of the leaf
count (1.0x per leaf means linear). Nothing is written; ``--tiny`` is a smoke test (3 and 6
leaves of 10 params, 2 steps).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optix

HEADER = (
    "| leaves | params | optix compile s | optax compile s | compile ratio | optix step ms "
    "| optax step ms | step ratio | optix HLO instr | optax HLO instr | optix fusions "
    "| optax fusions |"
)


class Compiled(NamedTuple):
    fn: Callable[..., Any]
    args: tuple[Any, Any]
    compile_s: float
    instructions: int
    fusions: int


def problem(leaves: int, per: int, seed: int = 0) -> tuple[dict, Callable[[dict], jax.Array]]:
    """Params and the objective ``0.5 sum c x^2`` over ``leaves`` float32 vectors."""
    rng = np.random.default_rng(seed)
    names = [f"p{i:05d}" for i in range(leaves)]
    params = {k: jnp.asarray(rng.uniform(-1, 1, per), jnp.float32) for k in names}
    curv = {k: jnp.asarray(rng.uniform(0.5, 2.0, per), jnp.float32) for k in names}

    def f(p: dict) -> jax.Array:
        return 0.5 * sum(jnp.sum(curv[k] * p[k] ** 2) for k in names)

    return params, f


def hlo_counts(text: str) -> tuple[int, int]:
    """(instructions, fusion call sites) of an optimised HLO module's text."""
    instructions = len(re.findall(r"^\s+(?:ROOT )?%\S+ = ", text, flags=re.M))
    fusions = len(re.findall(r"= \S+ fusion\(", text))
    return instructions, fusions


def build(lib: Any, tx: Any, params: dict, f: Callable, zoom: bool) -> Compiled:
    """The donated, jitted step of ``tx`` (from library ``lib``, optix or optax), compiled."""
    value_and_grad = lib.value_and_grad_from_state(f) if zoom else None

    def step(params, state):
        if zoom:
            value, grad = value_and_grad(params, state=state)
            extra = {"value": value, "grad": grad, "value_fn": f}
        else:
            grad, extra = jax.grad(f)(params), {}
        updates, state = tx.update(grad, state, params, **extra)
        return lib.apply_updates(params, updates), state

    params = jax.tree.map(jnp.copy, params)  # the step donates its params and state
    # optax relies on standard dtype promotion; optix runs under whatever the user set
    promotion = jax.numpy_dtype_promotion("standard") if lib is optax else contextlib.nullcontext()
    with promotion:
        state = jax.jit(tx.init)(params)
        t0 = time.perf_counter()
        fn = jax.jit(step, donate_argnums=(0, 1)).lower(params, state).compile()
        compile_s = time.perf_counter() - t0
    return Compiled(fn, (params, state), compile_s, *hlo_counts(fn.as_text()))


def time_alternately(a: Compiled, b: Compiled, steps: int, warmup: int) -> tuple[float, float]:
    """Median step seconds of ``a`` and of ``b``, one step of each in turn."""
    args = {0: a.args, 1: b.args}
    fns = {0: a.fn, 1: b.fn}
    for k in (0, 1):
        for _ in range(warmup):
            args[k] = fns[k](*args[k])
        jax.block_until_ready(args[k])
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(steps):
        for k in (0, 1):
            t0 = time.perf_counter()
            args[k] = fns[k](*args[k])
            jax.block_until_ready(args[k])
            times[k].append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def make(lib: Any, memory_size: int, zoom: bool) -> Any:
    """``lib.lbfgs``: with its default zoom line search (both: 20 evaluations at most, first
    trial step 1) and learning rate 1, or with a fixed step of 0.5."""
    if zoom:
        return lib.lbfgs(1.0, memory_size=memory_size)
    return lib.lbfgs(0.5, memory_size=memory_size, linesearch=None)


def row(leaves: int, per: int, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    params, f = problem(leaves, per)
    zoom = args.linesearch == "zoom"
    theirs = build(optax, make(optax, args.memory_size, zoom), params, f, zoom)
    ours = build(optix, make(optix, args.memory_size, zoom), params, f, zoom)
    ours_s, theirs_s = time_alternately(ours, theirs, args.steps, args.warmup)
    cells = [
        str(leaves),
        f"{leaves * per:,}",
        f"{ours.compile_s:.2f}",
        f"{theirs.compile_s:.2f}",
        f"{ours.compile_s / theirs.compile_s:.2f}x",
        f"{ours_s * 1e3:.3f}",
        f"{theirs_s * 1e3:.3f}",
        f"{ours_s / theirs_s:.2f}x",
        f"{ours.instructions:,}",
        f"{theirs.instructions:,}",
        f"{ours.fusions:,}",
        f"{theirs.fusions:,}",
    ]
    figures = {
        "optix compile": ours.compile_s,
        "optax compile": theirs.compile_s,
        "optix HLO": ours.instructions,
        "optax HLO": theirs.instructions,
    }
    return "| " + " | ".join(cells) + " |", figures


def growth(leaves: list[int], figures: list[dict[str, float]]) -> list[str]:
    """Each figure's growth from the first tree to the last, per unit of leaf-count growth."""
    if len(leaves) < 2:
        return []
    n = leaves[-1] / leaves[0]
    lines = [f"Growth from {leaves[0]} to {leaves[-1]} leaves ({n:.1f}x the leaves):"]
    for key in figures[0]:
        g = figures[-1][key] / figures[0][key]
        lines.append(f"- {key}: {g:.1f}x ({g / n:.2f}x per unit of leaf growth)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="3 and 6 leaves of 10, 2 steps")
    parser.add_argument("--leaves", default=None, help="comma-separated leaf counts")
    parser.add_argument("--per", type=int, default=None, help="params per leaf (1000)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (20)")
    parser.add_argument("--memory-size", type=int, default=10)
    parser.add_argument("--linesearch", choices=["none", "zoom"], default="none")
    args = parser.parse_args(argv)
    leaves = [int(n) for n in (args.leaves or ("3,6" if args.tiny else "25,50,100,150")).split(",")]
    per = args.per or (10 if args.tiny else 1000)
    args.steps = args.steps or (2 if args.tiny else 20)
    args.warmup = 1 if args.tiny else 3

    device = jax.devices()[0]
    print(
        f"## `python benchmarks/lbfgs.py` ({device.platform}: {device.device_kind}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, optax {optax.__version__})\n\n"
        f"L-BFGS (memory {args.memory_size}, line search: {args.linesearch}) on float32 leaves "
        f"of {per:,} params. Median of {args.steps} donated steps after {args.warmup} warm-up, "
        "optix and optax alternating; ratios are optix / optax.\n",
        flush=True,
    )
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    figures = []
    for n in leaves:
        line, numbers = row(n, per, args)
        figures.append(numbers)
        print(line, flush=True)
    print("\n" + "\n".join(growth(leaves, figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
