"""4-bit (packed, Li et al. 2023) Adam state against 8-bit and fp32 Adam.

Trains three tasks for 2000 full-batch steps each (inside ``lax.scan``) with

* fp32 Adam: ``optix.adam``,
* 8-bit Adam: ``optix.quantize_state(optix.adam(...))`` (block size 256),
* 4-bit Adam: ``optix.quantize_state(optix.adam(...), bits=4)`` (codes packed two per byte; the
  first moment block-wise in blocks of 128 with the signed dynamic map, the second moment with the
  linear map without zero and rank-1 normalisation of matrices),

all with the same cosine-decayed learning rate and init (``min_size=4096``: the leaves below stay
fp32), and prints the loss at checkpoints, the final losses and their ratio to fp32, and the bytes
per parameter of the quantized leaves (codes and scales of ``mu`` and ``nu`` together, over their
elements), then a markdown snippet for ``benchmarks/RESULTS.md``.

Tasks (data ship with scikit-learn or are drawn here; nothing is downloaded):

* ``digits_mlp``: a 64-128-128-10 ReLU MLP on the 1797 digits images, cross-entropy + 1e-3 L2
  (two matrices quantized: 64x128 and 128x128, so ``nu`` is normalised rank-1).
* ``diabetes_rff``: ridge regression on 4096 random Fourier features of the diabetes data set
  (a vector: ``nu`` block-wise).
* ``teacher_mlp``: a 32-128-128-16 ReLU MLP regressing a random two-layer tanh teacher plus
  noise, trained below the noise floor: the regime where a 4-bit first moment lags.

Run: ``python benchmarks/quantize_4bit.py [--steps 2000] [--tiny]``
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import optix
from benchmarks.quantized_state import _mlp
from benchmarks.quantized_state import diabetes_rff
from benchmarks.quantized_state import digits_mlp
from benchmarks.quantized_state import run_scan


def teacher_mlp():
    """Mean squared error of a 32-128-128-16 ReLU MLP fitting 1024 samples of a random tanh
    teacher plus noise of variance 0.0025 (the loss goes below it: the net overfits)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1024, 32))
    w1 = rng.standard_normal((32, 64)) / np.sqrt(32)
    w2 = rng.standard_normal((64, 16)) / 8
    y = np.tanh(x @ w1) @ w2 + 0.05 * rng.standard_normal((1024, 16))
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    sizes = [32, 128, 128, 16]
    keys = jax.random.split(jax.random.key(2), len(sizes) - 1)
    params = [
        {"w": jax.random.normal(k, (a, b)) * jnp.float32(1 / np.sqrt(a)), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def loss(p):
        return jnp.mean((_mlp(p, x) - y) ** 2)

    return params, loss, 3e-3


TASKS = {"digits_mlp": digits_mlp, "diabetes_rff": diabetes_rff, "teacher_mlp": teacher_mlp}


def optimizers(lr, steps):
    schedule = optix.schedules.cosine_decay(lr, steps)
    return {
        "fp32 Adam": optix.adam(schedule),
        "8-bit Adam": optix.quantize_state(optix.adam(schedule)),
        "4-bit Adam": optix.quantize_state(optix.adam(schedule), bits=4),
    }


def quantized_bytes_per_param(state) -> float | None:
    """Bytes of the quantized leaves (codes and scales) per element they stand for, summed over
    the state fields (Adam: ``mu`` and ``nu``), or None when nothing is quantized."""
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optix.QuantizedArray))
    nodes = [q for q in nodes if isinstance(q, optix.QuantizedArray)]
    if not nodes:
        return None
    fields = {}
    for q in nodes:
        n = int(np.prod(q.shape))
        fields.setdefault(q.signed, [0, 0])
        fields[q.signed][0] += q.codes.nbytes + q.scale.nbytes
        fields[q.signed][1] += n
    return sum(b / n for b, n in fields.values())


def train(task, tx, steps):
    final, curve, seconds, state = run_scan(task, tx, steps)
    return final, curve, seconds, quantized_bytes_per_param(state)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--tiny", action="store_true", help="20 steps, a smoke test")
    args = parser.parse_args(argv)
    steps = 20 if args.tiny else args.steps
    checkpoints = [c for c in (steps // 8, steps // 4, steps // 2, 3 * steps // 4) if c > 0]

    rows = []
    for task_name, task in TASKS.items():
        lr = task()[2]
        base = None
        for opt_name, tx in optimizers(lr, steps).items():
            final, curve, seconds, qbpp = train(task, tx, steps)
            base = final if base is None else base
            rows.append((task_name, opt_name, curve, final, final / base, qbpp))
            print(
                f"{task_name:>13} {opt_name:>10}: loss {final:.6f} ratio {final / base:.4f} "
                f"({seconds:.1f} s)",
                flush=True,
            )

    marks = " | ".join(f"loss @{c}" for c in checkpoints)
    lines = [
        f"| task | optimizer | {marks} | final loss @{steps} | ratio to fp32 "
        "| quantized bytes/param |",
        "|---|---|" + "---|" * len(checkpoints) + "---|---|---|",
    ]
    for task_name, opt_name, curve, final, ratio, qbpp in rows:
        at = " | ".join(f"{curve[c]:.5f}" for c in checkpoints)
        q = "-" if qbpp is None else f"{qbpp:.3f}"
        lines.append(f"| {task_name} | {opt_name} | {at} | {final:.6f} | {ratio:.4f} | {q} |")
    table = "\n".join(lines)
    print()
    print(table)
    return rows


if __name__ == "__main__":
    main()
