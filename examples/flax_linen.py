"""Train a flax linen MLP classifier with an optix optimizer inside ``TrainState``.

The optimizer is ``optix.partition``: AdamW with a warmup-cosine schedule for the kernels, and
Adam without weight decay for the biases, chosen by path patterns. ``TrainState`` only needs the
``(init, update)`` pair, so any optix transform is a valid ``tx``. The data (two concentric rings
of points) is generated here; nothing is downloaded.

Run:  python examples/flax_linen.py
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

import optix


class MLP(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(self.hidden)(x))
        x = jnp.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(2)(x)  # logits of the two classes


def make_rings(key, n: int):
    """Points on two noisy rings (radius 1 is class 0, radius 2 is class 1)."""
    k_angle, k_label, k_noise = jax.random.split(key, 3)
    angle = jax.random.uniform(k_angle, (n,), minval=0.0, maxval=2 * jnp.pi)
    label = jax.random.bernoulli(k_label, 0.5, (n,)).astype(jnp.int32)
    radius = 1.0 + label.astype(jnp.float32)
    x = jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=1)
    return x + 0.15 * jax.random.normal(k_noise, x.shape), label


def make_optimizer(steps: int) -> optix.GradientTransformation:
    schedule = optix.schedules.warmup_cosine_decay(0.0, 2e-2, steps // 10, steps, end_value=1e-3)
    return optix.partition(
        {"decay": optix.adamw(schedule, weight_decay=1e-4), "no_decay": optix.adam(schedule)},
        {"**/bias": "no_decay", "**": "decay"},
    )


def cross_entropy(logits, labels):
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def main(steps: int = 600, batch_size: int = 128) -> list[float]:
    key_init, key_data = jax.random.split(jax.random.key(0))
    model = MLP()
    params = jax.jit(model.init)(key_init, jnp.zeros((1, 2)))["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(steps))

    @jax.jit
    def train_step(state, i):
        x, y = make_rings(jax.random.fold_in(key_data, i), batch_size)

        def loss_fn(params):
            return cross_entropy(state.apply_fn({"params": params}, x), y)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    history = []
    for i in range(steps):
        state, loss = train_step(state, i)
        history.append(float(loss))
        if i % 100 == 0 or i == steps - 1:
            lr = float(optix.state_get(state.opt_state, "decay/learning_rate"))
            print(f"step {i:5d}   loss {float(loss):.4f}   learning rate {lr:.2e}")
    print(f"loss fell from {history[0]:.4f} to {sum(history[-20:]) / 20:.4f} (mean of last 20)")
    return history


if __name__ == "__main__":
    main()
