r"""Training the trials of one optimizer on one workload: one compiled, vmapped step.

Every hyperparameter of a configuration lives in the optimizer state (``optix.set_hyperparams``)
and the learning-rate schedule is computed inside the step from the step count ``t``:

.. math::

   \eta_t = \eta \cdot \min\!\Bigl(1, \frac{t + 1}{w T}\Bigr) \cdot
   \Bigl[\tfrac12\bigl(1 + \cos(\pi t / T)\bigr) \text{ if cosine else } 1\Bigr]

(``w`` the warm-up fraction, ``T`` the budget), so the ``N`` trials of a study are one batch of
``N`` states and one compiled step trains them all. The step is compiled once (ahead of time)
and every study reuses it. Each trial draws its own initialization and batch order from its seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optix
from optix.compare._spec import OptimizerSpec
from optix.compare._spec import SpecError
from optix.compare._workloads import Split
from optix.compare._workloads import Workload

SCHEDULE_KEYS = ("learning_rate", "warmup", "schedule")


@dataclass
class Study:
    """The raw record of one study: ``N`` trials trained together.

    Attributes:
      configs: the ``N`` configurations; seeds: their seeds (initialization and batch order).
      steps: ``(E,)`` steps at which the validation split was evaluated.
      valid_metric, valid_loss: ``(N, E)``; NaN from the first non-finite value on (diverged).
      steps_to_target: ``(N,)`` first evaluated step whose validation metric is ``<= target``
        (``inf``: missed); seconds_to_target: compile time plus this study's wall time up to then.
      test: final test ``{"loss": (N,), "error": (N,)}`` (empty without a test split).
      run_s: wall time of this study's steps and evaluations, compile excluded.
    """

    configs: list[dict[str, Any]]
    seeds: list[int]
    steps: np.ndarray
    valid_metric: np.ndarray
    valid_loss: np.ndarray
    steps_to_target: np.ndarray
    seconds_to_target: np.ndarray
    test: dict[str, np.ndarray] = field(default_factory=dict)
    run_s: float = 0.0

    def final_valid(self, key: str = "metric") -> np.ndarray:
        v = (self.valid_metric if key == "metric" else self.valid_loss)[:, -1]
        return np.where(np.isfinite(v), v, np.inf)

    def best_valid(self) -> np.ndarray:
        """``(N,)`` the best validation metric each trial reached (``inf`` if none finite)."""
        v = np.where(np.isfinite(self.valid_metric), self.valid_metric, np.inf)
        return v.min(axis=1)


@dataclass
class Trials:
    """One optimizer on one workload under one ruleset: its studies and what they cost."""

    spec: OptimizerSpec
    workload: str
    budget: int
    batch_size: int | None
    compile_s: float
    studies: list[Study]


def _stack(trees: list) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _divisor_at_most(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)


def state_hyperparams(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in SCHEDULE_KEYS}


def check_runs(spec: OptimizerSpec, workload: Workload, config: dict[str, Any]) -> None:
    """Trace (not run) one step, and check that ``config`` names hyperparameters in the state."""
    tx, params = spec.make(), workload.init(0)
    batch = None if workload.train is None else (workload.train.x[:2], workload.train.y[:2])
    try:
        state = jax.eval_shape(tx.init, params)
        grads = jax.eval_shape(jax.grad(workload.loss), params, batch)
        jax.eval_shape(lambda s, g: tx.update(g, s, params), state, grads)
    except Exception as err:  # whatever it is, this optimizer cannot run here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"{spec.label} cannot run on {workload.name}: {first}") from None
    have = optix.get_hyperparams(state)
    for name in ["learning_rate", *state_hyperparams(config)]:
        if name not in have:
            raise SpecError(
                f"{spec.label}: its state has no hyperparameter {name!r} to set (it has "
                f"{', '.join(sorted(have)) or 'none'}); fix it in the spec instead"
            )


_TEST_EVALUATORS: dict[int, tuple[Workload, Callable]] = {}


def _test_evaluator(workload: Workload) -> Callable:
    """One jitted, vmapped ``evaluate`` per workload, shared by every optimizer run on it (params
    have the same structure whatever the optimizer), so the test split costs one compile per
    workload, not one per optimizer."""
    held = _TEST_EVALUATORS.get(id(workload))
    if held is None or held[0] is not workload:
        fn = jax.jit(
            jax.vmap(lambda p, split: workload.evaluate(p, Split(*split)), in_axes=(0, None))
        )
        held = _TEST_EVALUATORS[id(workload)] = (workload, fn)
    return held[1]


def batch_size(spec: OptimizerSpec, workload: Workload) -> int | None:
    """Examples per step for ``spec`` on ``workload`` (``None``: the full training split)."""
    if workload.train is None or spec.batch == "full":
        return None
    size = workload.batch_size if spec.batch == "mini" else int(spec.batch)
    return None if size is None or size >= len(workload.train) else size


def train(
    workload: Workload,
    spec: OptimizerSpec,
    studies: list[list[dict[str, Any]]],
    *,
    budget: int,
    seed: int = 0,
    on_chunk: Callable[[float], None] | None = None,
) -> Trials:
    """Train every study of ``spec`` on ``workload`` (the studies in turn, each study's trials in
    one vmapped step; one compilation for all of them). ``budget`` is rounded up to a multiple of
    ``workload.eval_every``; ``Trials.budget`` is the number of steps run."""
    n = len(studies[0])
    if any(len(s) != n for s in studies):
        raise ValueError("every study must have the same number of trials")
    size = batch_size(spec, workload)
    tx = spec.make()
    every = workload.eval_every
    n_evals = -(-budget // every)  # the budget, rounded up to a whole number of evaluations
    n_chunks = _divisor_at_most(n_evals, 10)
    per_chunk = n_evals // n_chunks
    horizon = float(n_evals * every)
    train_set = None if workload.train is None else (workload.train.x, workload.train.y)
    valid_set = None if workload.valid is None else (workload.valid.x, workload.valid.y)
    n_train = 1 if workload.train is None else len(workload.train)

    def sample(key: jax.Array, data: Any) -> Any:
        if data is None or size is None:
            return data
        idx = jax.random.randint(key, (size,), 0, n_train)
        return (data[0][idx], data[1][idx])

    def one_step(p, s, key, t, hp, data):  # one trial
        tf = t.astype(jnp.float32)
        warm = jnp.where(hp["warm"] > 0, jnp.minimum(1.0, (tf + 1.0) / hp["warm"]), 1.0)
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(tf / horizon, 1.0)))
        lr = hp["lr"] * warm * jnp.where(hp["cosine"], cosine, 1.0)
        s = optix.set_hyperparams(s, learning_rate=lr)
        key, sub = jax.random.split(key)
        grads = jax.grad(workload.loss)(p, sample(sub, data))
        updates, s = tx.update(grads, s, p)
        return optix.apply_updates(p, updates), s, key

    step = jax.vmap(one_step, in_axes=(0, 0, 0, None, 0, None))

    def evaluate(p, split):
        return workload.evaluate(p, None if split is None else Split(*split))

    def chunk(carry, hp, data, valid):
        def record(c, _):
            def inner(c2, _):
                p, s, k, t = c2
                p, s, k = step(p, s, k, t, hp, data)
                return (p, s, k, t + 1), None

            c, _ = jax.lax.scan(inner, c, length=every)
            ev = jax.vmap(evaluate, in_axes=(0, None))(c[0], valid)
            return c, (ev["loss"], ev[workload.metric])

        return jax.lax.scan(record, carry, length=per_chunk)

    def start(configs: list[dict[str, Any]], seeds: list[int]) -> tuple[Any, dict[str, jax.Array]]:
        params = _stack([workload.init(s) for s in seeds])
        state = jax.vmap(tx.init)(params)
        names = list(state_hyperparams(configs[0]))
        if names:
            values = {k: jnp.asarray([float(c[k]) for c in configs], jnp.float32) for k in names}
            state = jax.vmap(lambda st, v: optix.set_hyperparams(st, **v))(state, values)
        keys = jnp.stack([jax.random.PRNGKey(10_000 + s) for s in seeds])
        hp = {
            "lr": jnp.asarray([c["learning_rate"] for c in configs], jnp.float32),
            "warm": jnp.asarray([c.get("warmup", 0.0) * horizon for c in configs], jnp.float32),
            "cosine": jnp.asarray([c.get("schedule") == "cosine" for c in configs]),
        }
        return (params, state, keys, jnp.zeros((), jnp.int32)), hp

    all_seeds = [[seed + i * n + j for j in range(n)] for i in range(len(studies))]
    carry, hp = start(studies[0], all_seeds[0])
    t0 = time.perf_counter()
    compiled = jax.jit(chunk).lower(carry, hp, train_set, valid_set).compile()
    compile_s = time.perf_counter() - t0
    test_eval, test_set = None, None
    if workload.test is not None:
        test_eval = _test_evaluator(workload)
        test_set = (workload.test.x, workload.test.y)

    records = []
    steps = every * np.arange(1, n_evals + 1)
    for i, (configs, seeds) in enumerate(zip(studies, all_seeds, strict=True)):
        if i:
            carry, hp = start(configs, seeds)
        losses, metrics = [], []
        t0 = time.perf_counter()
        for _ in range(n_chunks):
            carry, (loss, metric) = compiled(carry, hp, train_set, valid_set)
            losses.append(np.asarray(loss))
            metrics.append(np.asarray(metric))
            if on_chunk is not None:
                on_chunk(1.0 / (n_chunks * len(studies)))
        run_s = time.perf_counter() - t0
        loss, metric = np.concatenate(losses).T, np.concatenate(metrics).T  # (N, E)
        dead = np.cumsum(~(np.isfinite(loss) & np.isfinite(metric)), axis=1) > 0
        loss, metric = np.where(dead, np.nan, loss), np.where(dead, np.nan, metric)
        hit = np.nan_to_num(metric, nan=np.inf) <= workload.target
        to_target = np.where(hit.any(axis=1), steps[np.argmax(hit, axis=1)], np.inf)
        seconds = compile_s + to_target * (run_s / (n_evals * every))
        test = {}
        if test_eval is not None:
            ev = test_eval(carry[0], test_set)
            test = {k: np.where(dead[:, -1], np.nan, np.asarray(v)) for k, v in ev.items()}
        records.append(Study(configs, seeds, steps, metric, loss, to_target, seconds, test, run_s))
    return Trials(spec, workload.name, n_evals * every, size, compile_s, records)


def seconds_per_step(trials: Trials) -> float:
    """Mean wall time of one vmapped step of a study (all its trials together)."""
    runs = [s.run_s for s in trials.studies]
    return float(np.mean(runs)) / max(trials.budget, 1) if runs else math.nan
