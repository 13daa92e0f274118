"""optix beside optax, in the same process: step time, compile time, state memory, roofline share.

Run:  python benchmarks/run.py [--quick | --tiny] [--cases a,b] [--optimizers x,y] [--no-write]

For each case (a tree of params) and optimizer, it times optax and optix side by side, plus two
optix variants: ``fuse`` (``optix.fuse(tx)`` on the same tree: state packed, the math as a few
large kernels) and ``packed`` (the optimizer run on params and gradients that are already
``optix.pack``-ed, as a model that keeps its params packed would). Figures:

- step: the median over many donated, jitted steps after warm-up (``params, state = step(params,
  state, grads)`` with params and state donated);
- compile: ``jax.jit(step).lower(...).compile()`` on a fresh ``jit``, tracing included;
- state B/param: bytes of optimizer state per parameter;
- roofline: the least traffic one step needs (read grads and params, write params: 12 B per fp32
  param, plus reading and writing the state; 28 B for fp32 Adam; plus one more read of the
  gradients for a global-norm clip), divided by the step time, as a share of the bandwidth of
  the optimizer's own access pattern measured in the same run: a donated kernel reading
  ``g, m, v, p`` and writing ``m, v, p`` in place on all cores, counted at its least traffic
  (28 B per element), median of ``--bw-runs`` runs (3; their spread is printed). Copy, triad and
  numpy's threaded in-place triad are printed beside it for reference.

Ratios are optix / optax: below 1 means optix is faster or smaller. Results go to the terminal and
to ``benchmarks/RESULTS.md`` (one section per mode, replaced on each run; ``--tiny`` never writes).
The full run needs about 6 GiB of memory and, on a 2-core CPU, on the order of half an hour (most of
it optax compiling the 5000-leaf tree); ``--quick`` runs smaller sizes in under two minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import optix
from optix._fusable import is_elementwise

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")

# ---------------------------------------------------------------------------------------------
# Cases: trees of float32 shapes.


def gpt2_shapes(vocab: int, ctx: int, d: int, layers: int) -> dict:
    """The parameter shapes of GPT-2 (small: vocab 50257, ctx 1024, d 768, 12 layers: 124M)."""

    def ln():
        return {"g": (d,), "b": (d,)}

    def block():
        return {
            "ln_1": ln(),
            "attn": {
                "c_attn": {"w": (d, 3 * d), "b": (3 * d,)},
                "c_proj": {"w": (d, d), "b": (d,)},
            },
            "ln_2": ln(),
            "mlp": {
                "c_fc": {"w": (d, 4 * d), "b": (4 * d,)},
                "c_proj": {"w": (4 * d, d), "b": (d,)},
            },
        }

    return {"wte": (vocab, d), "wpe": (ctx, d), "h": [block() for _ in range(layers)], "ln_f": ln()}


def leaves_shapes(n: int, total: int) -> dict:
    per = max(total // n, 1)
    return {f"p{i:05d}": (per,) for i in range(n)}


# name -> {mode: shapes}
CASES: dict[str, dict[str, Any]] = {
    "flat": {
        "full": {"w": (64 * 2**20,)},
        "quick": {"w": (8 * 2**20,)},
        "tiny": {"w": (4096,)},
    },
    "leaves500": {
        "full": leaves_shapes(500, 16 * 2**20),
        "quick": leaves_shapes(500, 2 * 2**20),
        "tiny": leaves_shapes(20, 2000),
    },
    "leaves5000": {
        "full": leaves_shapes(5000, 640_000),
        "quick": leaves_shapes(1000, 128_000),
        "tiny": leaves_shapes(50, 500),
    },
    "gpt2": {
        "full": gpt2_shapes(50257, 1024, 768, 12),
        "quick": gpt2_shapes(8192, 256, 256, 4),
        "tiny": gpt2_shapes(64, 16, 16, 1),
    },
}
CASE_LABELS = {
    "flat": "one flat array",
    "leaves500": "medium leaves",
    "leaves5000": "small leaves",
    "gpt2": "GPT-2-small tree",
}

# ---------------------------------------------------------------------------------------------
# Optimizers: name -> (optix factory or None, optax factory, extra gradient reads per param).


def _optix(name: str, **kwargs: Any) -> Callable[[], Any] | None:
    fn = getattr(optix, name, None)
    return None if fn is None else (lambda: fn(**kwargs))


OPTIMIZERS: dict[str, tuple[Callable[[], Any] | None, Callable[[], Any], int]] = {
    "sgd+momentum": (
        _optix("sgd", learning_rate=1e-2, momentum=0.9),
        lambda: optax.sgd(1e-2, momentum=0.9),
        0,
    ),
    "adam": (_optix("adam", learning_rate=1e-3), lambda: optax.adam(1e-3), 0),
    "adamw": (
        _optix("adamw", learning_rate=1e-3, weight_decay=1e-2),
        lambda: optax.adamw(1e-3, weight_decay=1e-2),
        0,
    ),
    "clip+adamw": (
        (lambda: optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(1e-3, weight_decay=1e-2))),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-2)),
        1,
    ),
    "lion": (
        _optix("lion", learning_rate=1e-4, weight_decay=1e-3),
        lambda: optax.lion(1e-4, weight_decay=1e-3),
        0,
    ),
    "adafactor": (_optix("adafactor", learning_rate=1e-3), lambda: optax.adafactor(1e-3), 0),
}


def pairs(*names: str) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """``name -> (optix factory, optax factory)`` for the named entries of :data:`OPTIMIZERS`, so
    every benchmark script builds the same optimizers with the same hyperparameters."""
    out = {}
    for name in names:
        make_optix, make_optax, _ = OPTIMIZERS[name]
        assert make_optix is not None, name
        out[name] = (make_optix, make_optax)
    return out


# ---------------------------------------------------------------------------------------------
# Measurement.


@dataclasses.dataclass
class Row:
    case: str
    optimizer: str
    variant: str  # optax | optix | fuse | packed
    step_s: float | None = None
    compile_s: float | None = None
    state_bytes_per_param: float | None = None
    roofline: float | None = None
    note: str = ""


def _tree_bytes(tree: Any) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _time_steps(compiled: Callable, args: tuple, steps: int, warmup: int) -> tuple[float, tuple]:
    params, state, grads = args
    for _ in range(warmup):
        params, state = compiled(params, state, grads)
    jax.block_until_ready((params, state))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        params, state = compiled(params, state, grads)
        jax.block_until_ready((params, state))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (params, state)


def measure(
    tx: Any, params: Any, grads: Any, steps: int, warmup: int, *, standard: bool = False
) -> tuple[float, float, int]:
    """(median step s, compile s, state bytes) for ``tx`` on ``params`` with fixed ``grads``."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree.map(jnp.copy, params)  # the step donates its params and state
    # optax relies on standard dtype promotion; optix runs under whatever the user set.
    with jax.numpy_dtype_promotion("standard") if standard else contextlib.nullcontext():
        state = jax.jit(tx.init)(params)
        t0 = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
        compile_s = time.perf_counter() - t0
        nbytes = _tree_bytes(state)
        step_s, _ = _time_steps(compiled, (params, state, grads), steps, warmup)
    return step_s, compile_s, nbytes


def stream_kernels() -> tuple[Callable, Callable]:
    """The copy (``a = -b``) and triad (``a = b + 3c``) kernels, each writing into its donated
    ``a`` as an optimizer step writes into its donated params and state. ``keep_unused`` keeps
    ``a`` (which the kernel does not read) an argument: otherwise jit drops it, the donation is
    lost, and every call writes a freshly allocated buffer, whose page faults halved the measured
    bandwidth on this machine."""
    copy = jax.jit(lambda a, b: -b, donate_argnums=0, keep_unused=True)
    triad = jax.jit(lambda a, b, c: b + 3.0 * c, donate_argnums=0, keep_unused=True)
    return copy, triad


def optimizer_pattern_kernel() -> Callable:
    """The access pattern of an Adam step on one flat array: it reads ``g, m, v, p`` and writes
    ``m, v, p`` in place (donated), with Adam's arithmetic. Its least traffic is 28 B per float32
    element, the figure the roofline column counts for Adam. XLA:CPU compiles it, as it compiles
    optax's and optix's flat Adam, to three loop fusions ((g, m) -> m, (g, v) -> v and
    (p, m, v) -> p; there is no multi-output fusion on CPU), which move 40 B per element."""

    def pattern(g, m, v, p):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * (g * g)
        return m, v, p - 1e-3 * m / (jnp.sqrt(v) + 1e-8)

    return jax.jit(pattern, donate_argnums=(1, 2, 3))


PATTERN_BYTES, PATTERN_XLA_BYTES = 28, 40  # per element: least traffic; what XLA:CPU moves


def fusion_partitions(compiled_text: str) -> list[int]:
    """How many threads XLA:CPU splits each loop fusion over (``outer_dimension_partitions``; a
    fusion without one runs on one thread)."""
    parts = []
    for line in compiled_text.splitlines():
        if " fusion(" in line and "kind=kLoop" in line:
            m = re.search(r'"outer_dimension_partitions":\["(\d+)"', line)
            parts.append(int(m.group(1)) if m else 1)
    return parts


def numpy_triad(n: int, repeats: int, threads: int) -> float:
    """Median bytes/s of numpy's in-place triad ``a = b + 3c`` (12 B per element), split over
    ``threads`` threads in cache-sized blocks (numpy releases the GIL in its loops)."""
    import numpy as np

    a, b, c = np.zeros(n, np.float32), np.ones(n, np.float32), np.full(n, 2.0, np.float32)
    block = 1 << 16
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def part(k: int) -> None:
        lo, hi = bounds[k]
        for j in range(lo, hi, block):
            e = min(j + block, hi)
            np.multiply(c[j:e], 3.0, out=a[j:e])  # a's block stays in cache for the add
            np.add(a[j:e], b[j:e], out=a[j:e])

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, range(threads)))  # warm-up: touches every page
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(part, range(threads)))
            times.append(time.perf_counter() - t0)
    return 12 * n / statistics.median(times)


@dataclasses.dataclass
class Bandwidth:
    """One run of the bandwidth tests, bytes/s (median and best over the repeats)."""

    copy: float
    triad: float
    pattern: float  # Adam's pattern, at its least traffic (28 B per element)
    pattern_best: float
    numpy_triad: float
    threads: float  # process CPU time / wall time while the pattern kernel runs
    partitions: list[int]


def bandwidth(n: int, repeats: int) -> Bandwidth:
    """Measured bandwidth on float32 arrays of ``n`` elements: copy, triad, the optimizer's own
    access pattern (:func:`optimizer_pattern_kernel`), and numpy's threaded triad for reference.
    Every JAX kernel writes into its donated buffers; median of ``repeats`` timed calls."""
    b = jnp.full((n,), 1.0, jnp.float32)
    c = jnp.full((n,), 2.0, jnp.float32)
    copy, triad = stream_kernels()
    medians = []
    for fn, args, nbytes in [(copy, (b,), 8 * n), (triad, (b, c), 12 * n)]:
        a = jnp.zeros((n,), jnp.float32)
        a = fn(a, *args)  # compile and warm up
        jax.block_until_ready(a)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = fn(a, *args)
            jax.block_until_ready(a)
            times.append(time.perf_counter() - t0)
        medians.append(nbytes / statistics.median(times))
    pattern = optimizer_pattern_kernel()
    g = jnp.full((n,), 1e-3, jnp.float32)
    state = tuple(jnp.full((n,), x, jnp.float32) for x in (0.0, 0.0, 0.01))
    partitions = fusion_partitions(pattern.lower(g, *state).compile().as_text())
    state = pattern(g, *state)
    jax.block_until_ready(state)
    times = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = pattern(g, *state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    threads = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    del state
    np_triad = numpy_triad(n, repeats, os.cpu_count() or 1)
    return Bandwidth(
        copy=medians[0],
        triad=medians[1],
        pattern=PATTERN_BYTES * n / statistics.median(times),
        pattern_best=PATTERN_BYTES * n / min(times),
        numpy_triad=np_triad,
        threads=threads,
        partitions=partitions,
    )


def bandwidth_runs(n: int, repeats: int, runs: int) -> tuple[float, str]:
    """Runs :func:`bandwidth` ``runs`` times; returns the median pattern bandwidth (what the
    roofline column divides by) and a markdown paragraph with the spread of every figure."""
    results = [bandwidth(n, repeats) for _ in range(runs)]
    bw = statistics.median(r.pattern for r in results)

    def spread(field: str, scale: float = 1e-9) -> str:
        vals = [getattr(r, field) * scale for r in results]
        return f"{statistics.median(vals):.1f} ({min(vals):.1f} to {max(vals):.1f})"

    parts = sorted({p for r in results for p in r.partitions})
    text = (
        f"Measured bandwidth, GB/s, median of {runs} runs (range) of {repeats} calls each on "
        f"{n:,} float32 elements: the optimizer's access pattern (read g, m, v, p; "
        f"write m, v, p in place, donated; counted at its least traffic, {PATTERN_BYTES} B per "
        f"element) {spread('pattern')}, best call {spread('pattern_best')}; copy "
        f"{spread('copy')}; triad {spread('triad')}; numpy's in-place triad on "
        f"{os.cpu_count()} threads {spread('numpy_triad')}. XLA splits the pattern into "
        f"{len(results[0].partitions)} loop fusions, each over {'/'.join(map(str, parts))} "
        f"threads, moving {PATTERN_XLA_BYTES} B per element (so it streams "
        f"{bw * PATTERN_XLA_BYTES / PATTERN_BYTES / 1e9:.1f} GB/s); CPU time / wall time while "
        f"it runs: {spread('threads', 1.0)} (near the core count on a quiet machine; lower means "
        f"other processes held the cores during this run). The roofline column divides each step's least "
        f"traffic by the median pattern bandwidth."
    )
    return bw, text


def run_case(
    case: str, shapes: dict, optimizers: list[str], steps: int, warmup: int, bw: float
) -> list[Row]:
    params = jax.tree.map(lambda s: jnp.full(s, 0.01, jnp.float32), shapes, is_leaf=_is_shape)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    n = sum(x.size for x in jax.tree.leaves(params))
    rows = []
    for name in optimizers:
        make_optix, make_optax, extra_reads = OPTIMIZERS[name]

        def roofline(step_s, nbytes, extra_reads=extra_reads):
            traffic = (12 + 4 * extra_reads) * n + 2 * nbytes
            return traffic / step_s / bw

        def record(variant, make, p, g, standard=False, name=name):
            try:
                step_s, comp_s, nbytes = measure(make(), p, g, steps, warmup, standard=standard)
            except Exception as e:  # noqa: BLE001  a failing variant is reported, not fatal
                return Row(case, name, variant, note=f"error: {type(e).__name__}: {e}"[:120])
            finally:
                gc.collect()
            return Row(case, name, variant, step_s, comp_s, nbytes / n, roofline(step_s, nbytes))

        def add(*new: Row) -> None:
            for row in new:
                rows.append(row)
                print(_format_row(row, rows), flush=True)

        add(record("optax", make_optax, params, grads, standard=True))
        if make_optix is None:
            add(
                *(
                    Row(case, name, v, note="n/a (not in optix)")
                    for v in ("optix", "fuse", "packed")
                )
            )
            continue
        add(record("optix", make_optix, params, grads))
        if not is_elementwise(make_optix()):
            note = "not elementwise: fuse runs it unfused"
            add(*(Row(case, name, v, note=note) for v in ("fuse", "packed")))
            continue
        fused = lambda make=make_optix: optix.fuse(make())  # noqa: E731
        add(record("fuse", fused, params, grads))
        packed_p, packed_g = optix.pack(params), optix.pack(grads)
        add(record("packed", make_optix, packed_p, packed_g))
        del packed_p, packed_g
    return rows


# ---------------------------------------------------------------------------------------------
# Reporting.

HEADER = (
    "| case | optimizer | variant | step ms | step vs optax | compile s | compile vs optax "
    "| state B/param | roofline | note |"
)


def _ref(row: Row, rows: list[Row]) -> Row | None:
    for r in rows:
        if r.case == row.case and r.optimizer == row.optimizer and r.variant == "optax":
            return r
    return None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def _format_row(row: Row, rows: list[Row]) -> str:
    ref = _ref(row, rows)
    if row.step_s is None:
        cells = ["n/a"] * 6
    else:
        cells = [
            f"{row.step_s * 1e3:.2f}",
            _ratio(row.step_s, ref.step_s if ref else None),
            f"{row.compile_s:.2f}",
            _ratio(row.compile_s, ref.compile_s if ref else None),
            f"{row.state_bytes_per_param:.2f}",
            f"{100 * row.roofline:.0f} %",
        ]
    return "| " + " | ".join([row.case, row.optimizer, row.variant, *cells, row.note]) + " |"


def table(rows: list[Row]) -> str:
    sep = "|" + "---|" * HEADER.count(" | ") + "---|"
    return "\n".join([HEADER, sep, *(_format_row(r, rows) for r in rows)])


def write_results(path: str, mode: str, header: str, body: str) -> None:
    begin, end = f"<!-- run.py {mode}: begin -->", f"<!-- run.py {mode}: end -->"
    section = f"{begin}\n{header}\n\n{body}\n{end}"
    text = "# Benchmark results\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        # A new section goes before the first one already there, whether that is another mode's
        # (its begin marker comes before its heading) or a hand-written ``## `` section.
        first = re.search(r"^(<!-- run\.py |## )", text, re.M)
        text = (
            text.rstrip() + "\n\n" + section + "\n"
            if first is None
            else text[: first.start()] + section + "\n\n" + text[first.start() :]
        )
    with open(path, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, fewer steps (< 2 min)")
    size.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test); never writes")
    parser.add_argument("--cases", default=None, help=f"comma-separated subset of {list(CASES)}")
    parser.add_argument("--optimizers", default=None, help=f"subset of {list(OPTIMIZERS)}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--bw-runs", type=int, default=3, help="bandwidth runs (spread reported)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", default=RESULTS, help="the markdown file to update")
    args = parser.parse_args(argv)

    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    cases = args.cases.split(",") if args.cases else list(CASES)
    default_opts = ["adam"] if mode == "quick" else list(OPTIMIZERS)
    optimizers = args.optimizers.split(",") if args.optimizers else default_opts
    for name, known in [(c, CASES) for c in cases] + [(o, OPTIMIZERS) for o in optimizers]:
        if name not in known:
            parser.error(f"unknown name {name!r}; choose from {sorted(known)}")
    steps = args.steps or {"full": 20, "quick": 5, "tiny": 2}[mode]
    warmup = 1 if mode == "tiny" else 2
    t_start = time.perf_counter()

    device = jax.devices()[0]
    bw_n = {"full": 32 * 2**20, "quick": 8 * 2**20, "tiny": 2**16}[mode]
    bw_repeats = {"full": 20, "quick": 10, "tiny": 2}[mode]
    bw, bw_text = bandwidth_runs(bw_n, bw_repeats, args.bw_runs)
    header = (
        f"## `python benchmarks/run.py{'' if mode == 'full' else ' --' + mode}` "
        f"({device.platform}: {device.device_kind}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"optax {optax.__version__}; {time.strftime('%Y-%m-%d')})\n\n"
        f"{bw_text} Median of {steps} donated steps after {warmup} warm-up; "
        f"cases: "
        + ", ".join(
            f"{c} = {CASE_LABELS[c]} ({len(jax.tree.leaves(CASES[c][mode], is_leaf=_is_shape))} "
            f"leaves, {_count(CASES[c][mode]) / 1e6:.2f}M params)"
            for c in cases
        )
    )
    print(header, flush=True)
    rows: list[Row] = []
    for case in cases:
        rows += run_case(case, CASES[case][mode], optimizers, steps, warmup, bw)
        gc.collect()
    body = table(rows)
    elapsed = time.perf_counter() - t_start
    body += f"\n\nTotal run time: {elapsed:.0f} s."
    print()
    print(body, flush=True)
    if mode != "tiny" and not args.no_write:
        write_results(args.results, mode, header, body)
        print(f"\nwrote {args.results}")
    return 0


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _count(shapes: Any) -> int:
    total = 0
    for s in jax.tree.leaves(shapes, is_leaf=_is_shape):
        size = 1
        for d in s:
            size *= d
        total += size
    return total


if __name__ == "__main__":
    sys.exit(main())
