"""End to end: a whole flax nnx train step, optix beside optax, in the same process.

Run:  python benchmarks/nnx_train.py [--tiny] [--models a,b] [--optimizers x,y] [--rounds R]

Two real ``flax.nnx`` models train on data generated here (nothing is downloaded): a small causal
transformer language model (2 layers, d_model 128, 4 heads, context 64, vocab 256, on token
sequences that follow a noisy counting rule) and a small CNN (two 3x3 convolutions and a dense
head, on 28x28 images of class-dependent blobs). For each model and optimizer (``adam``,
``adamw``, ``sgd+momentum``; ``clip+adamw`` on request) the whole train step (forward, backward,
optimizer update) runs two ways, each with optax and with optix:

- ``nnx.jit``: ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``optimizer.update(model, grads)``
  in an ``nnx.jit`` function with the model and optimizer donated, the way nnx users write it;
- ``jax.jit``: the same step written functionally: ``nnx.split((model, optimizer))`` once outside,
  ``nnx.merge`` inside a plain ``jax.jit`` with the state donated, so that no graph traversal
  happens per call. The difference between the two rows is the per-call cost of ``nnx.jit``.

Figures: step ms is the median of all timed steps (each step blocks on its loss); the variants
are timed in interleaved rounds (the order reversed each round) so that load on a shared machine
falls on all of them alike. Compile s is the first call (tracing, compiling and one step). The
optimizer Variables column counts the nnx Variables in ``nnx.state(optimizer)`` (the step counter
included), which ``nnx.jit`` splits and merges on every call. A separate measurement times
``nnx.jit`` and ``jax.jit`` on modules of N scalar Variables to get the per-Variable cost of
``nnx.jit``, and multiplies it by the difference in Variables between optix and optax.

Every variant trains on the same fixed batch from the same init for the same number of steps,
so the loss after them agrees between optix and optax to float32 rounding (a check that both
take the same steps). Ratios are optix / optax on the same path: below 1 means optix is faster.
The HLO column counts the instructions and fusions in the compiled jax.jit step, a measure that
does not depend on the load. The script prints ready-to-paste markdown; it never writes files.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# ---------------------------------------------------------------------------------------------
# Models and data.


@dataclasses.dataclass(frozen=True)
class LMConfig:
    vocab: int
    context: int
    d_model: int
    heads: int
    layers: int
    batch: int


class Block(nnx.Module):
    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        d = cfg.d_model
        self.ln_1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=cfg.heads, in_features=d, decode=False, rngs=rngs
        )
        self.ln_2 = nnx.LayerNorm(d, rngs=rngs)
        self.fc = nnx.Linear(d, 4 * d, rngs=rngs)
        self.proj = nnx.Linear(4 * d, d, rngs=rngs)

    def __call__(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask=mask)
        return x + self.proj(jax.nn.gelu(self.fc(self.ln_2(x))))


class TransformerLM(nnx.Module):
    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(cfg.vocab, cfg.d_model, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.context, cfg.d_model)))
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.layers)])
        self.ln_f = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.head = nnx.Linear(cfg.d_model, cfg.vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.embed(tokens) + self.pos[...][: tokens.shape[-1]]
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))


def lm_batch(cfg: LMConfig, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sequences that count up by 1, 2 or 3 (mod vocab) from a random start. The benchmark
    trains on one fixed batch, so the loss column is a check that optix and optax take the same
    steps, not a measure of learning."""
    k_start, k_step = jax.random.split(key)
    start = jax.random.randint(k_start, (cfg.batch, 1), 0, cfg.vocab)
    steps = jax.random.randint(k_step, (cfg.batch, cfg.context), 1, 4)
    seq = (start + jnp.cumsum(steps, axis=1)) % cfg.vocab
    return seq[:, :-1], seq[:, 1:]


def lm_loss(model: TransformerLM, batch) -> jax.Array:
    tokens, targets = batch
    logits = model(tokens)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    size: int
    channels: tuple[int, int]
    classes: int
    batch: int


class CNN(nnx.Module):
    def __init__(self, cfg: CNNConfig, *, rngs: nnx.Rngs):
        c1, c2 = cfg.channels
        self.conv1 = nnx.Conv(1, c1, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(c1, c2, kernel_size=(3, 3), rngs=rngs)
        self.head = nnx.Linear((cfg.size // 4) ** 2 * c2, cfg.classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


def cnn_batch(cfg: CNNConfig, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Images of one Gaussian blob whose position is set by the class, plus noise."""
    k_label, k_noise = jax.random.split(key)
    labels = jax.random.randint(k_label, (cfg.batch,), 0, cfg.classes)
    angle = 2 * jnp.pi * labels / cfg.classes
    centre = cfg.size / 2 + cfg.size / 4 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
    grid = jnp.arange(cfg.size, dtype=jnp.float32)
    dy = grid[None, :, None] - centre[:, 0, None, None]
    dx = grid[None, None, :] - centre[:, 1, None, None]
    blob = jnp.exp(-(dx**2 + dy**2) / (cfg.size / 8) ** 2)
    noise = 0.1 * jax.random.normal(k_noise, blob.shape)
    return (blob + noise)[..., None], labels


def cnn_loss(model: CNN, batch) -> jax.Array:
    images, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(images), labels).mean()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    label: str
    make: Callable[[Any, nnx.Rngs], nnx.Module]
    batch: Callable[[Any, jax.Array], Any]
    loss: Callable[[Any, Any], jax.Array]
    configs: dict[str, Any]  # mode -> config


MODELS: dict[str, ModelSpec] = {
    "transformer": ModelSpec(
        "causal transformer LM",
        lambda cfg, rngs: TransformerLM(cfg, rngs=rngs),
        lm_batch,
        lm_loss,
        {
            "full": LMConfig(vocab=256, context=65, d_model=128, heads=4, layers=2, batch=16),
            "tiny": LMConfig(vocab=16, context=9, d_model=16, heads=2, layers=1, batch=2),
        },
    ),
    "cnn": ModelSpec(
        "CNN",
        lambda cfg, rngs: CNN(cfg, rngs=rngs),
        cnn_batch,
        cnn_loss,
        {
            "full": CNNConfig(size=28, channels=(16, 32), classes=10, batch=32),
            "tiny": CNNConfig(size=8, channels=(2, 4), classes=3, batch=2),
        },
    ),
}

try:  # benchmarks/run.py holds the optimizer pairs
    from benchmarks.run import pairs
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from run import pairs  # type: ignore[no-redef]

OPTIMIZERS = pairs(
    "adam", "adamw", "sgd+momentum", "clip+adamw"
)  # name -> (optix factory, optax factory)
DEFAULT_OPTIMIZERS = ["adam", "adamw", "sgd+momentum"]
LIBS = ("optax", "optix")
PATHS = ("nnx.jit", "jax.jit")

# ---------------------------------------------------------------------------------------------
# The two ways of writing the step.


def count_variables(node: Any) -> int:
    """The nnx Variables in ``node``'s state: what ``nnx.jit`` splits and merges per call."""
    return len(nnx.to_flat_state(nnx.state(node)))


class Variant:
    """One (library, path) train step with its own model and optimizer, same init for all."""

    def __init__(self, spec: ModelSpec, cfg: Any, tx: Any, path: str, batch: Any):
        model = spec.make(cfg, nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        self.optimizer_variables = count_variables(optimizer)
        self.model_variables = count_variables(model)
        self.batch = batch
        self.times: list[float] = []
        self.loss = float("nan")
        self._lower: Callable[[], Any] | None = None

        def train_step(model, optimizer, batch):
            loss, grads = nnx.value_and_grad(spec.loss)(model, batch)
            optimizer.update(model, grads)
            return loss

        if path == "nnx.jit":
            self.model, self.optimizer = model, optimizer
            step = nnx.jit(train_step, donate_argnums=(0, 1))
            self._call = lambda: step(self.model, self.optimizer, self.batch)
        else:
            graphdef, self.state = nnx.split((model, optimizer))

            def functional(state, batch):
                model, optimizer = nnx.merge(graphdef, state)
                loss = train_step(model, optimizer, batch)
                return nnx.state((model, optimizer)), loss

            step = jax.jit(functional, donate_argnums=0)
            self._lower = lambda: step.lower(self.state, self.batch)

            def call():
                self.state, loss = step(self.state, self.batch)
                return loss

            self._call = call

    def first_call(self) -> float:
        """Seconds for the first call: tracing, compiling and one step."""
        t0 = time.perf_counter()
        jax.block_until_ready(self._call())
        return time.perf_counter() - t0

    def hlo_counts(self) -> tuple[int, int] | None:
        """(HLO instructions, fusions) of the compiled step, jax.jit path only (after the first
        call, so jax's cache serves the compiled step and nothing compiles twice)."""
        if self._lower is None:
            return None
        text = self._lower().compile().as_text()
        instructions = sum(1 for line in text.splitlines() if " = " in line)
        return instructions, text.count(" fusion(")

    def time_steps(self, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            loss = self._call()
            jax.block_until_ready(loss)
            self.times.append(time.perf_counter() - t0)
        self.loss = float(loss)


@dataclasses.dataclass
class Row:
    model: str
    optimizer: str
    lib: str
    path: str
    step_s: float
    compile_s: float
    optimizer_variables: int
    model_variables: int
    loss: float
    steps: int
    hlo: tuple[int, int] | None


def run_pair(
    model: str, opt: str, mode: str, rounds: int, per_round: int, warmup: int
) -> list[Row]:
    spec = MODELS[model]
    cfg = spec.configs[mode]
    batch = spec.batch(cfg, jax.random.key(42))
    make = dict(zip(LIBS, (OPTIMIZERS[opt][1], OPTIMIZERS[opt][0]), strict=True))
    variants: dict[tuple[str, str], Variant] = {}
    compile_s: dict[tuple[str, str], float] = {}
    hlo: dict[tuple[str, str], tuple[int, int] | None] = {}
    for lib in LIBS:
        for path in PATHS:
            v = Variant(spec, cfg, make[lib](), path, batch)
            compile_s[lib, path] = v.first_call()
            hlo[lib, path] = v.hlo_counts()
            v.time_steps(warmup)
            v.times.clear()
            variants[lib, path] = v
    order = list(variants)
    for r in range(rounds):
        for key in order if r % 2 == 0 else order[::-1]:
            variants[key].time_steps(per_round)
    rows = []
    for (lib, path), v in variants.items():
        rows.append(
            Row(
                model,
                opt,
                lib,
                path,
                statistics.median(v.times),
                compile_s[lib, path],
                v.optimizer_variables,
                v.model_variables,
                v.loss,
                1 + warmup + rounds * per_round,
                hlo[lib, path],
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# The per-Variable cost of nnx.jit, against jax.jit on the same arrays.


class Bag(nnx.Module):
    def __init__(self, n: int):
        self.count = nnx.Param(jnp.zeros((), jnp.float32))
        self.vs = nnx.List([nnx.Param(jnp.zeros((), jnp.float32)) for _ in range(n)])


def _bump(bag: Bag) -> None:
    for v in [bag.count, *bag.vs]:
        v[...] = v[...] + 1.0


def per_variable_cost(sizes: list[int], calls: int) -> list[tuple[int, float, float]]:
    """(N, nnx.jit s per call, jax.jit s per call) for a donated step that adds 1 to each of
    1 + N scalar Variables: the same compiled work both ways, so the difference is nnx.jit's
    own."""
    out = []
    for n in sizes:
        bag = Bag(n)
        nnx_step = nnx.jit(_bump, donate_argnums=0)
        graphdef, state = nnx.split(Bag(n))

        def functional(state, graphdef=graphdef):
            bag = nnx.merge(graphdef, state)
            _bump(bag)
            return nnx.state(bag)

        jax_step = jax.jit(functional, donate_argnums=0)
        nnx_step(bag)
        state = jax_step(state)
        jax.block_until_ready(state)
        t_nnx, t_jax = [], []
        for _ in range(calls):  # interleaved
            t0 = time.perf_counter()
            nnx_step(bag)
            jax.block_until_ready(bag.count[...])
            t_nnx.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            state = jax_step(state)
            jax.block_until_ready(state)
            t_jax.append(time.perf_counter() - t0)
        out.append((n, statistics.median(t_nnx), statistics.median(t_jax)))
    return out


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


# ---------------------------------------------------------------------------------------------
# Reporting.


def _find(rows: list[Row], row: Row, lib: str, path: str) -> Row:
    return next(
        r
        for r in rows
        if (r.model, r.optimizer, r.lib, r.path) == (row.model, row.optimizer, lib, path)
    )


def main_table(rows: list[Row]) -> str:
    lines = [
        "| model | optimizer | path | lib | step ms | step vs optax | compile s "
        "| compile vs optax | optimizer Variables | HLO instructions / fusions | loss after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = _find(rows, r, "optax", r.path)
        hlo = "(as jax.jit)" if r.hlo is None else f"{r.hlo[0]} / {r.hlo[1]}"
        lines.append(
            f"| {r.model} | {r.optimizer} | {r.path} | {r.lib} | {r.step_s * 1e3:.2f} "
            f"| {r.step_s / ref.step_s:.2f}x | {r.compile_s:.2f} | {r.compile_s / ref.compile_s:.2f}x "
            f"| {r.optimizer_variables} | {hlo} | {r.loss:.4f} |"
        )
    return "\n".join(lines)


def overhead_table(rows: list[Row], per_var_s: float) -> str:
    lines = [
        "| model | optimizer | nnx.jit overhead optax ms | nnx.jit overhead optix ms "
        "| difference ms | optimizer Variables optax / optix | predicted difference ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.lib != "optax" or r.path != "nnx.jit":
            continue
        over = {
            lib: _find(rows, r, lib, "nnx.jit").step_s - _find(rows, r, lib, "jax.jit").step_s
            for lib in LIBS
        }
        nv = {lib: _find(rows, r, lib, "nnx.jit").optimizer_variables for lib in LIBS}
        predicted = (nv["optix"] - nv["optax"]) * per_var_s
        lines.append(
            f"| {r.model} | {r.optimizer} | {over['optax'] * 1e3:.2f} | {over['optix'] * 1e3:.2f} "
            f"| {(over['optix'] - over['optax']) * 1e3:+.2f} | {nv['optax']} / {nv['optix']} "
            f"| {predicted * 1e3:+.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models, few steps (smoke test)")
    parser.add_argument("--models", default=None, help=f"comma-separated subset of {list(MODELS)}")
    parser.add_argument("--optimizers", default=None, help=f"subset of {list(OPTIMIZERS)}")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--per-round", type=int, default=None, help="steps per variant per round")
    args = parser.parse_args(argv)

    mode = "tiny" if args.tiny else "full"
    models = args.models.split(",") if args.models else list(MODELS)
    opts = args.optimizers.split(",") if args.optimizers else DEFAULT_OPTIMIZERS
    for name, known in [(m, MODELS) for m in models] + [(o, OPTIMIZERS) for o in opts]:
        if name not in known:
            parser.error(f"unknown name {name!r}; choose from {sorted(known)}")
    rounds = args.rounds or {"full": 10, "tiny": 1}[mode]
    per_round = args.per_round or {"full": 10, "tiny": 2}[mode]
    warmup = {"full": 3, "tiny": 1}[mode]
    t_start = time.perf_counter()

    device = jax.devices()[0]
    import flax

    descr = []
    for m in models:
        cfg = MODELS[m].configs[mode]
        model = MODELS[m].make(cfg, nnx.Rngs(0))
        n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        descr.append(f"{m} = {MODELS[m].label} {cfg} ({n / 1e3:.1f}k params)")
        del model
    header = (
        f"### `python benchmarks/nnx_train.py{' --tiny' if args.tiny else ''}` "
        f"({device.platform}: {device.device_kind}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"flax {flax.__version__}, optax {optax.__version__}; {time.strftime('%Y-%m-%d')})\n\n"
        f"Median of {rounds} x {per_round} steps per variant, timed in interleaved rounds after "
        f"{warmup} warm-up steps; compile = first call (trace, compile, one step). "
        + "; ".join(descr)
    )
    print(header, flush=True)

    rows: list[Row] = []
    for m in models:
        for o in opts:
            new = run_pair(m, o, mode, rounds, per_round, warmup)
            rows += new
            for r in new:
                print(
                    f"  {m:12s} {o:13s} {r.path:8s} {r.lib:6s} step {r.step_s * 1e3:8.2f} ms  "
                    f"compile {r.compile_s:6.2f} s  opt Variables {r.optimizer_variables:4d}  "
                    f"loss {r.loss:.4f}",
                    flush=True,
                )
            gc.collect()

    sizes = [0, 8, 32] if mode == "tiny" else [0, 64, 256, 1024]
    calls = 5 if mode == "tiny" else 200
    cost = per_variable_cost(sizes, calls)
    per_var_nnx = slope([(n, t) for n, t, _ in cost])
    per_var_jax = slope([(n, t) for n, _, t in cost])
    per_var = per_var_nnx - per_var_jax

    out = [header, "", main_table(rows), ""]
    out.append(
        "nnx.jit overhead = nnx.jit step - jax.jit (split/merge) step, same library; predicted "
        "difference = (optix - optax optimizer Variables) x the per-Variable cost of nnx.jit "
        f"measured below ({per_var * 1e6:.2f} us per Variable beyond jax.jit's own "
        f"{per_var_jax * 1e6:.2f} us per leaf).\n"
    )
    out.append(overhead_table(rows, per_var))
    out.append("")
    out.append(
        "Per-call time of a donated step adding 1 to each of N scalar Variables (median of "
        f"{calls} interleaved calls):\n"
    )
    out.append("| N Variables | nnx.jit us | jax.jit (split/merge) us | difference us |")
    out.append("|---|---|---|---|")
    for n, tn, tj in cost:
        out.append(f"| {n} | {tn * 1e6:.0f} | {tj * 1e6:.0f} | {(tn - tj) * 1e6:.0f} |")
    out.append(
        f"| slope per Variable | {per_var_nnx * 1e6:.2f} | {per_var_jax * 1e6:.2f} "
        f"| {per_var * 1e6:.2f} |"
    )
    out.append(f"\nTotal run time: {time.perf_counter() - t_start:.0f} s.")
    print()
    print("\n".join(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
