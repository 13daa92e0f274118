r"""The benchmark: every optimizer on every workload under one tuning ruleset, then scored.

Per study, one trial is chosen using the validation split only: under ``external`` the trial that
reached the validation target in the fewest steps; under ``lr-sweep`` the one with the lowest
final validation loss; under ``self`` the only one. An optimizer's time on a workload is the median
over its studies of the chosen trial's time (a miss is ``inf`` and takes part in the median).
Times are measured in steps and in seconds (compile included); the scores and profiles of
:mod:`optix.compare._scoring` use steps (deterministic on a shared machine) and are also given
for seconds.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from optix.compare import _protocol
from optix.compare import _search
from optix.compare._bench_report import Benchmark
from optix.compare._bench_report import Entry
from optix.compare._progress import Progress
from optix.compare._spec import CLASSIC
from optix.compare._spec import OptimizerSpec
from optix.compare._spec import parse
from optix.compare._workloads import DEFAULT_WORKLOADS
from optix.compare._workloads import WORKLOADS
from optix.compare._workloads import Workload

MODERN = "prodigy,schedule_free_adamw"
DEFAULT_OPTIMIZERS = f"{CLASSIC},{MODERN}"
"""The default run: the classic optimizers and a few modern ones."""


def choose(study: _protocol.Study, ruleset: str) -> int:
    """The trial a study keeps, chosen on the validation split only."""
    if ruleset == "lr-sweep":
        return int(np.argmin(study.final_valid("loss")))
    # external (and self's single trial): fastest to the target; if none is, the best validation
    order = np.lexsort((study.best_valid(), study.steps_to_target))
    return int(order[0])


def environment() -> dict[str, Any]:
    """Versions, device and cores, for ``results.json``."""
    import optix

    dev = jax.devices()[0]
    try:
        cores: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count()
    return {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
        "numpy": np.__version__,
        "optix": getattr(optix, "__version__", "?"),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "devices": jax.device_count(),
        "cpu_cores": cores,
    }


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def prepare(
    workloads: str | Workload | Sequence[str | Workload] | None,
    optimizers: str | Sequence[str] | None,
    *,
    ruleset: str,
    studies: int,
    trials: int,
) -> tuple[list[Workload], list[OptimizerSpec]]:
    """Check every argument, build the workloads and optimizers; raise ValueError if bad."""
    if ruleset not in _search.RULESETS:
        raise ValueError(f"ruleset must be one of {', '.join(_search.RULESETS)}, got {ruleset!r}")
    _positive("studies", studies)
    _positive("trials", trials)
    names = DEFAULT_WORKLOADS if workloads is None else workloads
    if isinstance(names, str | Workload):
        names = [names]
    built = []
    for n in names:
        if isinstance(n, Workload):
            built.append(n)
        elif n in WORKLOADS:
            built.append(WORKLOADS[n]())
        else:
            raise ValueError(f"unknown workload {n!r}; valid workloads: {', '.join(WORKLOADS)}")
    if not built:
        raise ValueError("no workload given")
    seen = [w.name for w in built]
    dup = next((n for i, n in enumerate(seen) if n in seen[:i]), None)
    if dup is not None:
        raise ValueError(f"workload {dup!r} is given twice")
    text = DEFAULT_OPTIMIZERS if optimizers is None else optimizers
    specs = parse(text if isinstance(text, str) else ",".join(text))
    for spec in specs:
        config = _search.configurations(spec, ruleset, 1, 1)[0][0]
        for w in built:
            _protocol.check_runs(spec, w, config)
    return built, specs


def _key(spec: OptimizerSpec, workload: Workload) -> tuple:
    """Two specs with the same key train identically on this workload."""
    return (spec.factory, repr(sorted(spec.kwargs.items())), spec.learning_rate,
            _protocol.batch_size(spec, workload), _search.space(spec))  # fmt: skip


def run_benchmark(
    workloads: Any = None,
    optimizers: Any = None,
    *,
    ruleset: str = "external",
    studies: int = 3,
    trials: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> Benchmark:
    """See :func:`optix.compare.run`."""
    built, specs = prepare(workloads, optimizers, ruleset=ruleset, studies=studies, trials=trials)
    bar = Progress(len(built) * len(specs)) if progress else None
    entries: dict[str, dict[str, Entry]] = {s.label: {} for s in specs}
    try:
        for w in built:
            budget = w.budget
            if ruleset == "self":  # 1.5x, rounded up to a whole number of evaluations
                evals = math.ceil(_search.SELF_BUDGET_FACTOR * w.budget / w.eval_every)
                budget = evals * w.eval_every
            done: dict[tuple, str] = {}
            for spec in specs:
                if bar is not None:
                    bar.advance(0.0, f"{w.name} {spec.label}")
                key = _key(spec, w) if spec.name in ("gd", "sgd1", "sgd") else None
                if key is not None and key in done:  # no data: gd, sgd1 and sgd are one method
                    first = entries[done[key]][w.name]
                    entries[spec.label][w.name] = Entry(first.trials, first.chosen, done[key])
                    if bar is not None:
                        bar.advance(1.0)
                    continue
                configs = _search.configurations(spec, ruleset, studies, trials, seed)
                t = _protocol.train(
                    w, spec, configs, budget=budget, seed=seed,
                    on_chunk=None if bar is None else bar.advance,
                )  # fmt: skip
                entries[spec.label][w.name] = Entry(t, [choose(s, ruleset) for s in t.studies])
                if key is not None:
                    done[key] = spec.label
    finally:
        if bar is not None:
            bar.close()
    config = {
        "ruleset": ruleset,
        "studies": studies,
        "trials": len(_search.configurations(specs[0], ruleset, 1, trials)[0]),
        "seed": seed,
        "r_max": 4.0,
        "workloads": [w.name for w in built],
        "optimizers": [s.label for s in specs],
        "search_spaces": {s.label: [d.describe() for d in _search.space(s)] for s in specs},
        "environment": environment(),
    }
    return Benchmark(ruleset, built, specs, entries, config)
