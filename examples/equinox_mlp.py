"""Train an equinox MLP with optix: only the model's arrays reach the optimizer.

An equinox model is a pytree holding arrays and non-arrays (activation functions, sizes).
``eqx.filter(model, eqx.is_array)`` keeps the arrays and puts ``None`` elsewhere, and
``eqx.filter_value_and_grad`` differentiates with respect to those arrays only; optix sees
``None`` as an empty subtree, so the filtered model is a valid params tree. The optimizer here
freezes nothing but decays only the weights: ``optix.adamw``'s ``mask`` is itself an equinox
module (a callable pytree of bools, built with ``eqx.tree_at``), which optix reads as a mask tree,
never as a function. The data (a noisy sine) is generated here; nothing is downloaded.

Run:  python examples/equinox_mlp.py
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

import optix


def weight_mask(model: eqx.nn.MLP) -> eqx.nn.MLP:
    """A copy of ``model`` holding True at each layer's weight and False at every other leaf.

    It has a leaf wherever ``model`` has one (the activation function included), so it also fits
    the filtered model, where non-array leaves are ``None``.
    """

    def weights(m):
        return [layer.weight for layer in m.layers]

    mask = jax.tree.map(lambda _: False, model)
    return eqx.tree_at(weights, mask, replace=[True] * len(model.layers))


def make_optimizer(model: eqx.nn.MLP, steps: int) -> optix.GradientTransformation:
    schedule = optix.schedules.warmup_cosine_decay(0.0, 1e-2, steps // 10, steps, end_value=1e-4)
    return optix.adamw(schedule, weight_decay=1e-3, mask=weight_mask(model))


def make_batch(key, n: int):
    k_x, k_noise = jax.random.split(key)
    x = jax.random.uniform(k_x, (n, 1), minval=-3.0, maxval=3.0)
    return x, jnp.sin(2 * x) + 0.05 * jax.random.normal(k_noise, x.shape)


def main(steps: int = 1000, batch_size: int = 64) -> list[float]:
    key_model, key_data = jax.random.split(jax.random.key(0))
    model = eqx.nn.MLP(1, 1, width_size=32, depth=2, activation=jnp.tanh, key=key_model)
    tx = make_optimizer(model, steps)
    state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def train_step(model, state, i):
        x, y = make_batch(jax.random.fold_in(key_data, i), batch_size)

        def loss_fn(model):
            return jnp.mean((jax.vmap(model)(x) - y) ** 2)

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, loss

    history = []
    for i in range(steps):
        model, state, loss = train_step(model, state, jnp.int32(i))  # an array: not static
        history.append(float(loss))
        if i % 200 == 0 or i == steps - 1:
            lr = float(optix.get_hyperparams(state)["learning_rate"])
            print(f"step {i:5d}   loss {float(loss):.5f}   learning rate {lr:.2e}")
    print(f"loss fell from {history[0]:.4f} to {sum(history[-20:]) / 20:.5f} (mean of last 20)")
    return history


if __name__ == "__main__":
    main()
