"""Standard convergence problems: an ill-conditioned quadratic, Rosenbrock, logistic regression."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optix


def quadratic() -> tuple[Callable, Any]:
    """0.5 * sum(a_i x_i^2) with curvatures 1..10 (condition number 10), split over two leaves."""
    a = jnp.linspace(1.0, 10.0, 8, dtype=jnp.float32)

    def loss(p):
        x = jnp.concatenate([p["x"], p["y"].reshape(-1)])
        return 0.5 * jnp.sum(a * x**2)

    return loss, {"x": jnp.ones(4, jnp.float32), "y": jnp.ones((2, 2), jnp.float32)}


def rosenbrock() -> tuple[Callable, Any]:
    """(1 - x)^2 + 100 (y - x^2)^2 from (-1, 1.5); minimum 0 at (1, 1)."""

    def loss(p):
        x, y = p["xy"][0], p["xy"][1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    return loss, {"xy": jnp.array([-1.0, 1.5], jnp.float32)}


def logistic() -> tuple[Callable, Any]:
    """Mean logistic loss on 256 points in 6-D drawn from two Gaussians (nearly separable)."""
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=6)
    x = rng.normal(size=(256, 6)).astype(np.float32)
    y = (x @ w_true + 0.3 * rng.normal(size=256) > 0).astype(np.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss(p):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)

    return loss, {"w": jnp.zeros(6, jnp.float32), "b": jnp.zeros((), jnp.float32)}


PROBLEMS = {"quadratic": quadratic, "rosenbrock": rosenbrock, "logistic": logistic}
# (steps, final loss must be below this fraction of the initial loss)
TARGETS = {"quadratic": (500, 1e-3), "rosenbrock": (3000, 0.1), "logistic": (500, 0.5)}


def train(tx: optix.GradientTransformation, loss: Callable, params: Any, steps: int):
    """Run ``steps`` optimizer steps inside one jitted ``lax.scan``; return (params, losses)."""

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = tx.update(grads, state, params)
            return (optix.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return params, losses

    return run(params)


NOISY_SHAPES = {"scalar": (), "vector": (5,), "matrix": (3, 4)}


def noisy_quadratic(n_steps: int, seed: int = 0):
    """A diagonal quadratic with per-step gradient noise, as NumPy float64 trees:
    (curvature, target, noise for each of ``n_steps`` steps, initial params)."""
    rng = np.random.default_rng(seed)
    curvature = {k: np.exp(rng.uniform(-1, 1, s)) for k, s in NOISY_SHAPES.items()}
    target = {k: rng.standard_normal(s) for k, s in NOISY_SHAPES.items()}
    noise = [
        {k: 0.3 * rng.standard_normal(s) for k, s in NOISY_SHAPES.items()} for _ in range(n_steps)
    ]
    p0 = {k: 2.0 * rng.standard_normal(s) for k, s in NOISY_SHAPES.items()}
    return curvature, target, noise, p0
