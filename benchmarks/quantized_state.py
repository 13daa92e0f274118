"""8-bit (block-wise quantized) Adam state against fp32 and bf16-moment Adam.

Trains two tasks for 2000 full-batch steps each (inside ``lax.scan``) with

* fp32 Adam: ``optix.adam``,
* 8-bit Adam: ``optix.quantize_state(optix.adam(...))`` (default ``block_size=256``,
  ``min_size=4096``),
* bf16 Adam: ``optix.adam(..., mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)``,

all with the same cosine-decayed learning rate, and prints a table (final loss, ratio to fp32,
bytes of moment state per parameter), a markdown snippet for ``benchmarks/RESULTS.md``, and
writes the loss curves to ``benchmarks/quantized_state.png``.

Tasks (data ship with scikit-learn; nothing is downloaded):

* ``digits_mlp``: a 64-128-128-10 ReLU MLP on the 1797 digits images, cross-entropy + 1e-3 L2.
* ``diabetes_rff``: ridge regression on 4096 random Fourier features of the diabetes data set.

Run: ``python benchmarks/quantized_state.py [--steps 2000] [--out benchmarks/quantized_state.png]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.datasets import load_digits

import optix

HERE = Path(__file__).resolve().parent


def _mlp(params, x):
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"][None, :]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def digits_mlp(n_images: int | None = None, width: int = 128):
    """A 64-width-width-10 ReLU MLP on the first ``n_images`` digits (all by default)."""
    data = load_digits()
    x = jnp.asarray(data.data[:n_images] / 16.0, jnp.float32)
    y = jnp.asarray(data.target[:n_images])
    sizes = [64, width, width, 10]
    keys = jax.random.split(jax.random.key(0), len(sizes) - 1)
    params = [
        {"w": jax.random.normal(k, (a, b)) * jnp.float32(np.sqrt(2 / a)), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def loss(p):
        logp = jax.nn.log_softmax(_mlp(p, x))
        nll = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return nll + 1e-3 * sum(jnp.sum(layer["w"] ** 2) for layer in p)

    return params, loss, 1e-2


def diabetes_rff():
    data = load_diabetes()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    y = (data.target - data.target.mean()) / data.target.std()
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((10, 4096)) / np.sqrt(10)
    feats = np.sqrt(2 / 4096) * np.cos(x @ proj + rng.uniform(0, 2 * np.pi, 4096))
    feats, y = jnp.asarray(feats, jnp.float32), jnp.asarray(y, jnp.float32)

    def loss(p):
        residual = feats @ p["w"] + p["b"] - y
        return jnp.mean(residual**2) + 1e-3 * jnp.sum(p["w"] ** 2)

    return {"w": jnp.zeros(4096), "b": jnp.zeros(())}, loss, 1e-2


TASKS = {"digits_mlp": digits_mlp, "diabetes_rff": diabetes_rff}


def optimizers(lr, steps):
    schedule = optix.schedules.cosine_decay(lr, steps)
    return {
        "fp32 Adam": optix.adam(schedule),
        "8-bit Adam": optix.quantize_state(optix.adam(schedule)),
        "bf16 Adam": optix.adam(schedule, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    }


def state_bytes_per_param(state, params) -> float:
    """Bytes of every state array except hyperparameters and counters, per parameter."""
    n = sum(x.size for x in jax.tree.leaves(params))
    hp = {id(x) for x in jax.tree.leaves(optix.get_hyperparams(state))}
    leaves = [x for x in jax.tree.leaves(state) if x.ndim > 0 and id(x) not in hp]
    return sum(x.nbytes for x in leaves) / n


def quantized_bytes_per_param(state) -> float | None:
    """Bytes per element of the quantized leaves alone (codes and scales), or None."""
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optix.QuantizedArray))
    nodes = [q for q in nodes if isinstance(q, optix.QuantizedArray)]
    if not nodes:
        return None
    return sum(q.codes.nbytes + q.scale.nbytes for q in nodes) / sum(q.codes.size for q in nodes)


def run_scan(task, tx, steps):
    """``steps`` full-batch steps of ``tx`` on ``task`` in one jitted ``lax.scan``: (final loss,
    loss curve, seconds including the compile, the initial state)."""
    params, loss, _ = task()
    value_and_grad = jax.value_and_grad(loss)

    def body(carry, _):
        p, s = carry
        value, g = value_and_grad(p)
        u, s = tx.update(g, s, p)
        return (optix.apply_updates(p, u), s), value

    @jax.jit
    def run(p, s):
        (p, s), curve = jax.lax.scan(body, (p, s), None, length=steps)
        return loss(p), curve

    state = tx.init(params)
    start = time.perf_counter()
    final, curve = run(params, state)
    final = float(final)
    return final, np.asarray(curve), time.perf_counter() - start, state


def train(task, tx, steps):
    final, curve, seconds, state = run_scan(task, tx, steps)
    params = task()[0]
    bytes_pp = (state_bytes_per_param(state, params), quantized_bytes_per_param(state))
    return final, curve, seconds, bytes_pp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default=str(HERE / "quantized_state.png"))
    args = parser.parse_args(argv)

    rows, curves = [], {}
    for task_name, task in TASKS.items():
        lr = task()[2]
        base = None
        for opt_name, tx in optimizers(lr, args.steps).items():
            final, curve, seconds, bpp = train(task, tx, args.steps)
            base = final if base is None else base
            rows.append((task_name, opt_name, final, final / base, bpp, seconds))
            curves[(task_name, opt_name)] = curve
            print(f"{task_name:>13} {opt_name:>11}: loss {final:.6f} ({seconds:.1f} s)", flush=True)

    header = (
        "| task | optimizer | final loss | ratio to fp32 | state bytes/param "
        "| bytes per element of a quantized leaf |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for task_name, opt_name, final, ratio, (bpp, qbpp), _ in rows:
        q = "-" if qbpp is None else f"{qbpp:.3f}"
        lines.append(f"| {task_name} | {opt_name} | {final:.6f} | {ratio:.4f} | {bpp:.3f} | {q} |")
    table = "\n".join(lines)
    print()
    print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4))
    for ax, task_name in zip(np.atleast_1d(axes), TASKS, strict=True):
        for (t, opt_name), curve in curves.items():
            if t == task_name:
                ax.semilogy(curve, label=opt_name, lw=1.2)
        ax.set_title(f"{task_name} ({args.steps} full-batch steps)")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"\nwrote {args.out}")

    print("\n--- markdown for benchmarks/RESULTS.md ---")
    print("### 8-bit optimizer state (block-wise quantized Adam)\n")
    print(
        f"`optix.quantize_state(optix.adam(lr))`, block size 256, leaves under 4096 elements kept "
        f"in fp32; {args.steps} full-batch steps, cosine-decayed learning rate, same init. "
        "State bytes/param count every non-scalar state array (moments, codes and scales) over "
        "all params, so small leaves left in fp32 (the MLP's biases and 128x10 head) raise it; "
        "the last column is one quantized leaf's codes and scales per element (Adam keeps two "
        "such leaves per param: 2 x 1.016 = 2.031 bytes/param).\n"
    )
    print(table)
    print(f"\n![loss curves]({Path(args.out).name})")


if __name__ == "__main__":
    main()
