"""Train a flax nnx MLP with ``nnx.Optimizer`` driving an optix optimizer.

``nnx.Optimizer(model, tx, wrt=nnx.Param)`` accepts any ``(init, update)`` pair, so optix
transforms plug in unchanged. Here the optimizer is a ``named_chain`` of global-norm clipping and
an ``optix.partition`` that trains the kernels with AdamW and the biases with plain Adam. The
partition's path patterns are written against the ``nnx.State`` of the params, where each array
sits in a ``Param`` node: ``"**/bias"`` matches ``layers/0/bias/value`` through its ancestor. The
data (a noisy sine) is generated here; nothing is downloaded.

Run:  python examples/flax_nnx.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import optix


class MLP(nnx.Module):
    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(m, n, rngs=rngs) for m, n in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


def make_optimizer(steps: int) -> optix.GradientTransformation:
    schedule = optix.schedules.warmup_cosine_decay(0.0, 1e-2, steps // 10, steps, end_value=1e-4)
    return optix.named_chain(
        clip=optix.clip_by_global_norm(1.0),
        body=optix.partition(
            {"decay": optix.adamw(schedule, weight_decay=1e-4), "no_decay": optix.adam(schedule)},
            {"**/bias": "no_decay", "**": "decay"},
        ),
    )


def make_batch(key, n: int):
    k_x, k_noise = jax.random.split(key)
    x = jax.random.uniform(k_x, (n, 1), minval=-3.0, maxval=3.0)
    return x, jnp.sin(2 * x) + 0.05 * jax.random.normal(k_noise, x.shape)


def main(steps: int = 1000, batch_size: int = 64) -> list[float]:
    key_data = jax.random.key(1)
    model = MLP((1, 32, 32, 1), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, make_optimizer(steps), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, i):
        x, y = make_batch(jax.random.fold_in(key_data, i), batch_size)

        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    history = []
    for i in range(steps):
        loss = train_step(model, optimizer, jnp.int32(i))
        history.append(float(loss))
        if i % 200 == 0 or i == steps - 1:
            lr = float(optix.state_get(optimizer.opt_state, "decay/learning_rate"))
            print(f"step {i:5d}   loss {float(loss):.5f}   learning rate {lr:.2e}")
    print(f"loss fell from {history[0]:.4f} to {sum(history[-20:]) / 20:.5f} (mean of last 20)")
    return history


if __name__ == "__main__":
    main()
