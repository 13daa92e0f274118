"""Training: every learning rate and seed of one optimizer in one compiled, vmapped step.

The configurations of one optimizer (``L`` learning rates times ``S`` seeds) form one batch of
``L * S`` states. The learning rate lives in the state (``optix.set_hyperparams``), so a single
compiled step, vmapped over that batch, trains all of them at once. Steps run inside ``lax.scan``
in chunks; between chunks control returns to Python to draw the progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import optix
from optix.compare._problems import Batch
from optix.compare._problems import Problem
from optix.compare._spec import OptimizerSpec

DIVERGENCE_FACTOR = 1e3
"""A run has diverged once ``loss - f_min`` is not finite or exceeds this many times
``max(initial loss - f_min, 1)``; its later losses are recorded as NaN."""


@dataclass
class Run:
    """The raw record of one optimizer on one problem, over learning rates (L) and seeds (S).

    Attributes:
      spec: the optimizer.
      lrs: ``(L,)`` learning rates; ``swept`` says whether they came from a sweep.
      batch_size: examples per step (``None``: the full batch).
      steps: ``(E + 1,)`` step numbers at which the loss was recorded (0 first).
      loss: ``(L, S, E + 1)`` training ``loss - f_min`` at those steps, NaN once diverged.
      diverged: ``(L, S)``.
      test_loss, test_acc: ``(L, S)`` after the last step, for problems with a test set.
      train_loss: ``(L, S)`` final full training loss (not shifted by ``f_min``).
      path: ``(L, S, E + 1, 2)`` parameters at the recorded steps, for 2-D problems.
      compile_s: seconds to compile the step; run_s: seconds to run all steps after that.
    """

    spec: OptimizerSpec
    lrs: np.ndarray
    swept: bool
    batch_size: int | None
    steps: np.ndarray
    loss: np.ndarray
    diverged: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray | None
    test_acc: np.ndarray | None
    path: np.ndarray | None
    compile_s: float
    run_s: float


def _stack(trees: list) -> object:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is <= ``k`` (trial division up to sqrt(n), so a huge
    prime ``n`` takes milliseconds, not a loop over every candidate)."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            best = max([best] + [x for x in (d, n // d) if x <= k])
    return best


def train(
    problem: Problem,
    spec: OptimizerSpec,
    *,
    steps: int,
    lrs: np.ndarray | None = None,
    seeds: int = 1,
    batch_size: int = 32,
    on_chunk: Callable[[float], None] | None = None,
) -> Run:
    """Train ``spec`` on ``problem`` at each rate in ``lrs`` (or its own rate) and each seed."""
    swept = lrs is not None and spec.learning_rate is None
    rates = np.asarray(lrs if swept else [spec.default_lr()], np.float64)
    n_lr, n_seed = len(rates), seeds
    n_train = problem.data.n_train if problem.data is not None else None
    size = spec.batch_size(batch_size, n_train)
    tx = spec.make(float(rates[0]))

    # The batch of L * S configurations, learning-rate major.
    params = _stack([problem.init(s) for s in range(n_seed)])
    state = jax.vmap(tx.init)(params)

    def tile(x: jax.Array) -> jax.Array:
        return jnp.reshape(jnp.broadcast_to(x, (n_lr, *x.shape)), (n_lr * n_seed, *x.shape[1:]))

    params, state = jax.tree.map(tile, params), jax.tree.map(tile, state)
    if swept:
        lr_batch = jnp.asarray(
            np.repeat(rates, n_seed), optix.get_hyperparams(state)["learning_rate"].dtype
        )
        state = jax.vmap(lambda st, lr: optix.set_hyperparams(st, learning_rate=lr))(
            state, lr_batch
        )
    keys = tile(jnp.stack([jax.random.PRNGKey(1000 + s) for s in range(n_seed)]))

    loss0 = np.asarray(jax.vmap(problem.train_loss)(params)) - problem.f_min
    limit = jnp.asarray(DIVERGENCE_FACTOR * np.maximum(loss0, 1.0), jnp.float32)
    f_min = jnp.asarray(problem.f_min, jnp.float32)

    two_d = problem.box is not None
    max_points = 2000 if two_d else 100
    # Record every `every` steps, in `n_chunks` compiled calls; both divide evenly, so no step
    # is ever masked out.
    every = _divisor_at_most(steps, math.ceil(steps / max_points))
    n_evals = steps // every
    n_chunks = _divisor_at_most(n_evals, 10)
    per_chunk = n_evals // n_chunks
    data = problem.data

    # The data are arguments of the compiled step, not constants folded into it (slow to compile).
    train_set = None if data is None else (data.x_train, data.y_train)

    def sample(key: jax.Array, train: Batch) -> Batch:
        if train is None or size is None:
            return train
        idx = jax.random.randint(key, (size,), 0, data.n_train if data is not None else 1)
        return (train[0][idx], train[1][idx])

    def full_loss(p: object, train: Batch) -> jax.Array:
        return problem.loss(p, train)

    def one_step(p, s, key, train):  # one configuration
        key, sub = jax.random.split(key)
        grads = jax.grad(problem.loss)(p, sample(sub, train))
        updates, s = tx.update(grads, s, p)
        return optix.apply_updates(p, updates), s, key

    batched_step = jax.vmap(one_step, in_axes=(0, 0, 0, None))

    def chunk(carry, train):
        # A diverged configuration keeps running (its losses are NaN from then on): masking it
        # out would cost a select over the whole state in every step.
        def record(c, _):
            def inner(c2, _):
                p, s, k, dead = c2
                p, s, k = batched_step(p, s, k, train)
                return (p, s, k, dead), None

            c, _ = jax.lax.scan(inner, c, length=every)
            p, s, k, dead = c
            f = jax.vmap(full_loss, in_axes=(0, None))(p, train).astype(jnp.float32) - f_min
            dead = dead | ~jnp.isfinite(f) | (f > limit)
            out = (jnp.where(dead, jnp.nan, f), p if two_d else None)
            return (p, s, k, dead), out

        return jax.lax.scan(record, carry, length=per_chunk)

    carry = (params, state, keys, jnp.zeros(n_lr * n_seed, bool))
    t_compile = time.perf_counter()
    compiled = jax.jit(chunk).lower(carry, train_set).compile()
    compile_s = time.perf_counter() - t_compile

    losses, paths = [], []
    t_run = time.perf_counter()
    for _ in range(n_chunks):
        carry, (rec, pts) = compiled(carry, train_set)
        losses.append(np.asarray(rec))
        if two_d:
            paths.append(np.asarray(pts))
        if on_chunk is not None:
            on_chunk(1.0 / n_chunks)
    jax.block_until_ready(carry)
    run_s = time.perf_counter() - t_run

    shape = (n_lr, n_seed)
    rec = np.concatenate(losses)  # (E, B)
    loss = np.concatenate([loss0[None], rec]).T.reshape(*shape, n_evals + 1)
    record_steps = every * np.arange(n_evals + 1)
    final_params = carry[0]
    diverged = np.asarray(carry[3]).reshape(shape)
    train_loss = np.asarray(jax.vmap(problem.train_loss)(final_params)).reshape(shape)
    test_loss = test_acc = None
    accuracy = problem.accuracy
    if data is not None and data.x_test is not None and data.y_test is not None and accuracy:
        x_test, y_test = data.x_test, data.y_test
        test_loss = np.asarray(jax.vmap(lambda p: problem.loss(p, (x_test, y_test)))(final_params))
        test_acc = np.asarray(jax.vmap(lambda p: accuracy(p, x_test, y_test))(final_params))
        test_loss, test_acc = test_loss.reshape(shape), test_acc.reshape(shape)
    path = None
    if two_d:
        start = np.asarray(params).reshape(*shape, 1, 2)
        pts = np.concatenate(paths)  # (E, B, 2)
        path = np.concatenate([start, np.moveaxis(pts, 0, 1).reshape(*shape, n_evals, 2)], axis=2)
    return Run(
        spec, rates, swept, size, record_steps, loss, diverged, train_loss, test_loss, test_acc,
        path, compile_s, run_s,
    )  # fmt: skip
