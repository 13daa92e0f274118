"""Step time, compile time and state memory: optix beside optax, in the same run.

Run:  python benchmarks/step_time.py [--quick]

Prints one table; ratios are optix / optax (below 1 means optix is faster or smaller).
Times are medians over repeated, donated, jitted steps; compile time is ``lower().compile()``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import optix

try:  # benchmarks/run.py, whose timing harness this shares
    from benchmarks import run
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import run  # type: ignore[no-redef]

PAIRS = {
    "sgd+momentum": (lambda: optix.sgd(1e-2, momentum=0.9), lambda: optax.sgd(1e-2, momentum=0.9)),
    "rmsprop": (lambda: optix.rmsprop(1e-3), lambda: optax.rmsprop(1e-3)),
    "adam": (lambda: optix.adam(1e-3), lambda: optax.adam(1e-3)),
    "adamw": (lambda: optix.adamw(1e-3), lambda: optax.adamw(1e-3)),
}


def make_params(layout: str, total: int):
    if layout == "one flat array":
        return {"w": jnp.ones((total,), jnp.float32)}
    n = 200
    return {f"layer{i}": jnp.ones((total // n,), jnp.float32) for i in range(n)}


def measure(tx, params, repeats: int, *, standard: bool = False):
    """(median step s, compile s, state bytes), timed by ``benchmarks/run.py``'s harness."""
    grads = jax.tree.map(lambda x: jnp.full_like(x, 1e-3), params)
    return run.measure(tx, params, grads, repeats, 1, standard=standard)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args()
    total = 200_000 if args.quick else 4_000_000
    repeats = 5 if args.quick else 30
    print(f"device: {jax.devices()[0].device_kind}, params: {total:,} float32, repeats: {repeats}")
    header = (
        f"{'optimizer':<14}{'layout':<18}{'optix ms':>10}{'optax ms':>10}{'ratio':>8}"
        f"{'optix comp s':>14}{'optax comp s':>14}{'ratio':>8}{'state ratio':>13}"
    )
    print(header)
    print("-" * len(header))
    for layout in ["one flat array", "200 leaves"]:
        params = make_params(layout, total)
        for name, (mine, theirs) in PAIRS.items():
            t1, c1, s1 = measure(mine(), params, repeats)
            t2, c2, s2 = measure(theirs(), params, repeats, standard=True)
            print(
                f"{name:<14}{layout:<18}{t1 * 1e3:>10.3f}{t2 * 1e3:>10.3f}{t1 / t2:>8.2f}"
                f"{c1:>14.3f}{c2:>14.3f}{c1 / c2:>8.2f}{s1 / s2:>13.3f}"
            )


if __name__ == "__main__":
    main()
