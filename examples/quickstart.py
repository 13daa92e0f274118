"""Train a small MLP on a synthetic regression task with optix, printing the loss as it falls.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import optix


def init_mlp(key, sizes=(1, 32, 32, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / jnp.sqrt(m), "b": jnp.zeros((1, n))}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def main(steps: int = 2000, batch_size: int = 64) -> list[float]:
    key_init, key_data = jax.random.split(jax.random.key(0))
    params = init_mlp(key_init)

    def loss_fn(params, x, y):
        return jnp.mean((mlp(params, x) - y) ** 2)

    schedule = optix.schedules.warmup_cosine_decay(0.0, 1e-2, 100, steps, end_value=1e-4)
    tx = optix.chain(optix.clip_by_global_norm(1.0), optix.adamw(schedule, weight_decay=1e-4))
    state = tx.init(params)

    @jax.jit
    def step(params, state, key):
        x = jax.random.uniform(key, (batch_size, 1), minval=-3.0, maxval=3.0)
        y = jnp.sin(2 * x)  # the function to learn
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optix.apply_updates(params, updates), state, loss

    history = []
    for i, key in enumerate(jax.random.split(key_data, steps)):
        params, state, loss = step(params, state, key)
        history.append(float(loss))
        if i % 200 == 0 or i == steps - 1:
            lr = float(optix.get_hyperparams(state)["learning_rate"])
            print(f"step {i:5d}   loss {float(loss):.5f}   learning rate {lr:.2e}")
    print(f"loss fell from {history[0]:.4f} to {sum(history[-50:]) / 50:.5f} (mean of last 50)")
    return history


if __name__ == "__main__":
    main()
