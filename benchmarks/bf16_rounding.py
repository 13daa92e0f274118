"""Pure-bf16 AdamW (params and gradients in bf16) with round-to-nearest, stochastic rounding and
Kahan-compensated updates, against fp32 AdamW on the same task.

Task: a 64-``width``-10 tanh MLP on the 1797 scikit-learn digits images (shipped with
scikit-learn, nothing is downloaded), full batch, cross-entropy, trained for ``--steps`` steps
(inside ``lax.scan``) with AdamW at a constant learning rate. The bf16 runs do everything in bf16:
params, forward pass, gradients, updates (the Adam moments stay float32, optix's default); the
fp32 run is the same code in float32. With ``lr = 1e-4`` an Adam step (about ``lr`` per
coordinate) is below half a bf16 ulp for every param larger than about ``0.026``, so
round-to-nearest drops most updates.

The final loss is evaluated in float32 on each run's final params (upcast), so the table compares
the params the optimizers reach, not the noise of a bf16 forward pass. Several seeds (different
initializations) give the spread.

Run: ``python benchmarks/bf16_rounding.py [--steps 3000] [--lr 1e-4] [--seeds 2]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import optix

BF16 = jnp.bfloat16


def _data(dtype):
    data = load_digits()
    x = jnp.asarray(data.data / 16.0, dtype)
    return x, jnp.asarray(data.target)


def init_params(seed: int, width: int):
    sizes = [64, width, 10]
    keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * jnp.float32(np.sqrt(1 / a)), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def loss_fn(params, x, y):
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"][None, :]
        if i < len(params) - 1:
            h = jnp.tanh(h)
    logp = jax.nn.log_softmax(h.astype(jnp.float32))  # the loss value itself in float32
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def variants(lr: float, weight_decay: float):
    def adamw():
        return optix.adamw(lr, weight_decay=weight_decay)

    return {
        "fp32 params": (jnp.float32, adamw()),
        "bf16, round to nearest": (BF16, adamw()),
        "bf16 + stochastic_rounding": (BF16, optix.stochastic_rounding(adamw(), seed=0)),
        "bf16 + kahan_summation": (BF16, optix.kahan_summation(adamw())),
        "bf16 + kahan_summation (bf16 buffer)": (
            BF16,
            optix.kahan_summation(adamw(), compensation_dtype=BF16),
        ),
    }


def train(tx, dtype, seed: int, steps: int, width: int) -> tuple[float, float]:
    x, y = _data(dtype)
    params = jax.tree.map(lambda p: p.astype(dtype), init_params(seed, width))
    grad = jax.grad(loss_fn)

    def body(carry, _):
        p, s = carry
        u, s = tx.update(grad(p, x, y), s, p)
        return (optix.apply_updates(p, u), s), None

    @jax.jit
    def run(p, s):
        (p, _), _ = jax.lax.scan(body, (p, s), None, length=steps)
        return p

    start = time.perf_counter()
    final = run(params, tx.init(params))
    final = jax.block_until_ready(final)
    seconds = time.perf_counter() - start
    x32, _ = _data(jnp.float32)
    upcast = jax.tree.map(lambda p: p.astype(jnp.float32), final)
    return float(loss_fn(upcast, x32, y)), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args(argv)

    names = list(variants(args.lr, args.weight_decay))
    losses: dict[str, list[float]] = {name: [] for name in names}
    total = 0.0
    for seed in range(args.seeds):
        for name, (dtype, tx) in variants(args.lr, args.weight_decay).items():
            final, seconds = train(tx, dtype, seed, args.steps, args.width)
            losses[name].append(final)
            total += seconds
            print(f"seed {seed}  {name:38s} final loss {final:.5f}  ({seconds:.1f} s)")

    ref = np.array(losses["fp32 params"])
    print(
        f"\ndigits MLP 64-{args.width}-10, full batch, AdamW lr={args.lr:g} "
        f"weight_decay={args.weight_decay:g}, {args.steps} steps, {args.seeds} seeds "
        f"({total:.0f} s in all)\n"
    )
    print("| params / update rounding | final loss (mean over seeds) | per seed | vs fp32 |")
    print("|---|---|---|---|")
    for name in names:
        got = np.array(losses[name])
        per_seed = ", ".join(f"{v:.4f}" for v in got)
        ratio = got / ref
        print(
            f"| {name} | {got.mean():.4f} | {per_seed} | "
            f"x{ratio.mean():.3f} (x{ratio.min():.3f} to x{ratio.max():.3f}) |"
        )


if __name__ == "__main__":
    main()
