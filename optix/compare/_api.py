"""``optix.compare.run``: check everything, then train every optimizer on every problem."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import optix
from optix.compare._bench import run_benchmark
from optix.compare._bench_report import Benchmark
from optix.compare._problems import DEFAULT_SUITE
from optix.compare._problems import Problem
from optix.compare._problems import make_problem
from optix.compare._progress import Progress
from optix.compare._report import Results
from optix.compare._results import ProblemResult
from optix.compare._results import summarize
from optix.compare._runner import train
from optix.compare._spec import CLASSIC
from optix.compare._spec import OptimizerSpec
from optix.compare._spec import SpecError
from optix.compare._spec import parse
from optix.compare._workloads import Workload

DEFAULT_SWEEP = "1e-4:10:11"
"""The learning-rate sweep of the command line's default run."""


def parse_sweep(text: str) -> np.ndarray:
    """``"LO:HI:N"`` -> ``N`` learning rates spaced evenly in log scale from ``LO`` to ``HI``.

    Example:
      >>> from optix.compare import parse_sweep
      >>> [float(f"{x:.3g}") for x in parse_sweep("1e-3:1e-1:3")]
      [0.001, 0.01, 0.1]
    """
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--lr-sweep must be LO:HI:N (say 1e-4:1:9), got {text!r}") from None
    return sweep_rates(lo, hi, n)


def sweep_rates(lo: float, hi: float, n: int) -> np.ndarray:
    if not (0 < lo <= hi < math.inf) or n < 1 or (n == 1 and lo != hi):
        raise ValueError(
            f"learning-rate sweep needs 0 < LO <= HI and N >= 1 (N = 1 only with LO = HI), "
            f"got {lo:g}:{hi:g}:{n}"
        )
    return np.logspace(math.log10(lo), math.log10(hi), n)


def _rates(lr_sweep: Any) -> np.ndarray | None:
    if lr_sweep is None:
        return None
    if isinstance(lr_sweep, str):
        return parse_sweep(lr_sweep)
    if isinstance(lr_sweep, tuple) and len(lr_sweep) == 3 and isinstance(lr_sweep[2], int):
        return sweep_rates(float(lr_sweep[0]), float(lr_sweep[1]), lr_sweep[2])
    rates = np.asarray(lr_sweep, np.float64).ravel()
    if rates.size == 0 or not np.all(np.isfinite(rates) & (rates >= 0)):
        raise ValueError("learning rates to sweep must be finite and >= 0")
    return rates


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_runs(spec: OptimizerSpec, problem: Problem, sweep: bool) -> None:
    """Trace (not run) one step, so an optimizer that cannot run here fails before any work."""
    tx, params = spec.make(), problem.init(0)
    try:
        state = jax.eval_shape(tx.init, params)
        jax.eval_shape(lambda s: tx.update(params, s, params), state)
    except Exception as err:  # whatever it is, this optimizer cannot run in this tool
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"{spec.label} cannot run on {problem.name}: {first}") from None
    if sweep and spec.learning_rate is None and "learning_rate" not in optix.get_hyperparams(state):
        raise SpecError(
            f"{spec.label}: its state has no single `learning_rate` to sweep; give one "
            f"(`{spec.name}:learning_rate=...`) or run without a sweep"
        )


def prepare(
    problem: str | Problem | Sequence[str | Problem] | None,
    optimizers: str | Sequence[str] | None,
    *,
    steps: int | None,
    batch_size: int,
    seeds: int,
    lr_sweep: Any,
    condition: float | None,
) -> tuple[list[Problem], list[OptimizerSpec], np.ndarray | None]:
    """Check every argument and build the problems and optimizers; raise ValueError if bad."""
    if steps is not None:
        _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("seeds", seeds)
    rates = _rates(lr_sweep)
    if condition is not None and not (1 <= condition < math.inf):
        raise ValueError(f"condition must be a finite number >= 1, got {condition!r}")
    names = DEFAULT_SUITE if problem is None else problem
    if isinstance(names, str | Problem):
        names = [names]
    problems = [make_problem(n, condition=condition) if isinstance(n, str) else n for n in names]
    if not problems:
        raise ValueError("no problem given")
    text = CLASSIC if optimizers is None else optimizers
    specs = parse(text if isinstance(text, str) else ",".join(text))
    for spec in specs:
        _check_runs(spec, problems[0], rates is not None)
    return problems, specs, rates


def _same_without_data(spec: OptimizerSpec, seen: dict) -> str | None:
    """On a problem without data every batch size is the full batch: run each optimizer once."""
    key = (spec.factory, repr(sorted(spec.kwargs.items())), spec.learning_rate)
    if key in seen:
        return seen[key]
    seen[key] = spec.label
    return None


def run(
    problem: str | Problem | Sequence[str | Problem] | None = None,
    optimizers: str | Sequence[str] | None = None,
    *,
    workloads: str | Workload | Sequence[str | Workload] | None = None,
    ruleset: str | None = None,
    studies: int = 3,
    trials: int = 5,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int = 32,
    seeds: int = 1,
    lr_sweep: str | tuple[float, float, int] | Sequence[float] | None = None,
    condition: float | None = None,
    progress: bool = False,
) -> Benchmark | Results:
    """Benchmark optimizers on workloads (a :class:`Benchmark`), or compare them on problems.

    Without ``problem``: the benchmark protocol (see ``docs/compare.md``). Each optimizer is tuned
    under ``ruleset`` on each workload's validation split, its time to the validation target is
    the median over ``studies``, and the result is scored with performance profiles.

    With ``problem``: the quick comparison on a 2-D landscape or toy problem (trajectories, a
    learning-rate sweep chosen by final training loss); returns :class:`Results`.

    Args:
      problem: a built-in problem name (see ``optix.compare.PROBLEMS``), a :class:`Problem`, or a
        list of them; ``None`` runs the benchmark on ``workloads``.
      optimizers: a spec such as ``"adam,sgd:momentum=0.9"``; ``None`` runs the classic set
        (plus prodigy and schedule_free_adamw in the benchmark). Options given in the spec
        are fixed, not searched.
      workloads: workload names (``optix.compare.WORKLOADS``) or :class:`Workload` objects;
        ``None``: ``DEFAULT_WORKLOADS``.
      ruleset: ``"external"`` (default: quasi-random search of each optimizer's search space,
        the fastest trial per study), ``"self"`` (defaults, 1.5x the budget) or ``"lr-sweep"``
        (``trials`` learning rates, chosen by final validation loss).
      studies: independent repeats (new seeds and search points); the median counts.
      trials: configurations per study, all trained in one compiled, vmapped step.
      seed: seed of the search and of the runs.
      (The remaining arguments apply to ``problem`` only.)
      optimizers: a spec such as ``"adam:learning_rate=3e-4,sgd:momentum=0.9"`` (or a list of
        specs); ``None`` runs the classic set ``gd, sgd1, sgd, momentum, nesterov, adagrad,
        rmsprop, adadelta, adam, adamw``.
      steps: optimizer steps per run; ``None`` uses each problem's default.
      batch_size: examples per mini-batch, for optimizers whose batch is ``mini`` (the default).
      seeds: initializations (and batch orders) per configuration, trained together; metrics are
        reported as mean and std over them.
      lr_sweep: ``"LO:HI:N"``, ``(lo, hi, n)`` or a list of rates. Each optimizer without a rate
        of its own in the spec trains at all of them in one vmapped run, and the best (lowest
        mean final training loss) is reported. ``None``: each optimizer's own rate.
      condition: condition number of the ``quadratic`` problem.
      progress: draw a progress bar on stderr once the run has taken a few seconds.

    Example:
      >>> import optix.compare
      >>> res = optix.compare.run("rosenbrock", "adam,momentum", steps=50, lr_sweep="1e-3:1e-1:3")
      >>> [s.label for s in res["rosenbrock"].summaries]
      ['adam', 'momentum']
      >>> bench = optix.compare.run(workloads="rosenbrock", optimizers="adam", studies=1, trials=2)
      >>> list(bench.scores())
      ['adam']
    """
    if problem is None or isinstance(problem, Workload):
        legacy = dict(steps=steps, lr_sweep=lr_sweep, condition=condition)
        given = [k for k, v in legacy.items() if v is not None]
        given += ["batch_size"] * (batch_size != 32) + ["seeds"] * (seeds != 1)
        if problem is not None and workloads is not None:
            raise ValueError("give the workloads once (as workloads=...)")
        if given:
            raise ValueError(
                f"{given[0]} applies to problems (run(problem, ...)); a workload has its own "
                "budget and batch size"
            )
        return run_benchmark(
            problem if workloads is None else workloads, optimizers,
            ruleset="external" if ruleset is None else ruleset, studies=studies, trials=trials,
            seed=seed, progress=progress,
        )  # fmt: skip
    if workloads is not None or ruleset is not None:
        raise ValueError("give either problem (a quick comparison) or workloads/ruleset, not both")
    problems, specs, rates = prepare(
        problem, optimizers, steps=steps, batch_size=batch_size, seeds=seeds,
        lr_sweep=lr_sweep, condition=condition,
    )  # fmt: skip
    plan = []
    for p in problems:
        seen: dict = {}
        todo, skipped = [], []
        for spec in specs:
            same = None if p.has_data else _same_without_data(spec, seen)
            if same is None:
                todo.append(spec)
            else:
                skipped.append(f"{spec.label}: same as {same} here (no data: every batch is full)")
        plan.append((p, todo, skipped))
    bar = Progress(sum(len(t) for _, t, _ in plan)) if progress else None
    out = []
    try:
        for p, todo, skipped in plan:
            summaries = []
            for spec in todo:
                if bar is not None:
                    bar.advance(0.0, f"{p.name} {spec.label}")
                result = train(
                    p, spec, steps=steps or p.steps, lrs=rates, seeds=seeds,
                    batch_size=batch_size, on_chunk=None if bar is None else bar.advance,
                )  # fmt: skip
                summaries.append(summarize(p, result))
            out.append(ProblemResult(p, summaries, skipped))
    finally:
        if bar is not None:
            bar.close()
    config = {
        "problems": [p.name for p in problems],
        "optimizers": [s.label for s in specs],
        "steps": steps,
        "batch_size": batch_size,
        "seeds": seeds,
        "lr_sweep": None if rates is None else [float(r) for r in rates],
        "condition": condition,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    return Results(out, config)
