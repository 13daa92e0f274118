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

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from optix.compare import _protocol, _search
from optix.compare._progress import Progress
from optix.compare._scoring import benchmark_score, performance_ratios
from optix.compare._spec import CLASSIC, OptimizerSpec, parse
from optix.compare._workloads import DEFAULT_WORKLOADS, WORKLOADS, Workload

MODERN = "prodigy,schedule_free_adamw"
DEFAULT_OPTIMIZERS = f"{CLASSIC},{MODERN}"
"""The default run: the classic optimizers and a few modern ones."""

MEASURES = ("steps", "seconds")


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite numbers become None."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def choose(study: _protocol.Study, ruleset: str) -> int:
    """The trial a study keeps, chosen on the validation split only."""
    if ruleset == "lr-sweep":
        return int(np.argmin(study.final_valid("loss")))
    # external (and self's single trial): fastest to the target; if none is, the best validation
    order = np.lexsort((study.best_valid(), study.steps_to_target))
    return int(order[0])


@dataclass
class Entry:
    """One optimizer on one workload: its trials and the chosen trial of each study."""

    trials: _protocol.Trials
    chosen: list[int]
    same_as: str | None = None

    def _per_study(self, name: str) -> np.ndarray:
        return np.asarray(
            [getattr(s, name)[i] for s, i in zip(self.trials.studies, self.chosen, strict=True)]
        )

    @property
    def steps(self) -> float:
        return float(np.median(self._per_study("steps_to_target")))

    @property
    def seconds(self) -> float:
        return float(np.median(self._per_study("seconds_to_target")))

    @property
    def hits(self) -> int:
        return int(np.isfinite(self._per_study("steps_to_target")).sum())

    def test(self) -> dict[str, float]:
        """Median over studies of the chosen trial's final test values (reported, never used)."""
        out = {}
        for key in self.trials.studies[0].test:
            vals = [s.test[key][i] for s, i in zip(self.trials.studies, self.chosen, strict=True)]
            out[key] = float(np.median(vals))
        return out

    def valid(self) -> float:
        """Median over studies of the chosen trial's final validation metric."""
        vals = [
            s.valid_metric[i, -1] for s, i in zip(self.trials.studies, self.chosen, strict=True)
        ]
        return float(np.median(vals))

    def config(self) -> dict[str, Any]:
        """The chosen configuration of the study whose time is the median (lower middle)."""
        times = self._per_study("steps_to_target")
        k = int(np.argsort(times, kind="stable")[(len(times) - 1) // 2])
        return self.trials.studies[k].configs[self.chosen[k]]

    def tuning_curve(self) -> np.ndarray:
        """Median over studies of the best validation metric among the first k trials."""
        curves = [np.minimum.accumulate(s.best_valid()) for s in self.trials.studies]
        return np.median(np.asarray(curves), axis=0)


@dataclass
class Benchmark:
    """What :func:`optix.compare.run` returns for workloads: every entry, scores and output.

    ``times(measure)`` gives ``times[optimizer][workload]``; ``scores(measure)`` the AlgoPerf
    benchmark scores; ``table()`` the terminal table; ``plot(kind)`` a figure (``"profiles"``,
    ``"tuning"``, ``"curves"``); ``save(directory)`` writes the figures, ``report.md`` and
    ``results.json``.
    """

    ruleset: str
    workloads: list[Workload]
    optimizers: list[OptimizerSpec]
    entries: dict[str, dict[str, Entry]]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.optimizers]

    def times(self, measure: str = "steps") -> dict[str, dict[str, float]]:
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        return {
            o: {w.name: getattr(self.entries[o][w.name], measure) for w in self.workloads}
            for o in self.labels
        }

    def scores(self, measure: str = "steps") -> dict[str, float]:
        return benchmark_score(self.times(measure), r_max=self.config.get("r_max", 4.0))

    def ratios(self, measure: str = "steps") -> dict[str, dict[str, float]]:
        return performance_ratios(self.times(measure))

    def table(self) -> str:
        from optix.compare._bench_report import text_table

        return text_table(self)

    def plot(self, kind: str = "profiles", workload: str | None = None, ax: Any = None) -> Any:
        """A matplotlib figure: ``"profiles"`` (performance profiles by steps and by seconds),
        ``"tuning"`` (best validation result against trials) or ``"curves"`` (validation curve of
        each optimizer's chosen trial); ``workload`` restricts the last two to one workload, and
        with ``ax`` the figure is drawn into that axes (profiles by steps only)."""
        from optix.compare._bench_report import plot

        return plot(self, kind, ax=ax, workload=workload)

    def to_dict(self) -> dict[str, Any]:
        workloads = {}
        for w in self.workloads:
            optimizers = {}
            for o in self.labels:
                e = self.entries[o][w.name]
                t = e.trials
                optimizers[o] = {
                    "same_as": e.same_as,
                    "steps_to_target": e.steps,
                    "seconds_to_target": e.seconds,
                    "studies_reaching_target": e.hits,
                    "chosen_config": e.config(),
                    "valid_metric": e.valid(),
                    "test": e.test(),
                    "tuning_curve": e.tuning_curve().tolist(),
                    "batch_size": t.batch_size or "full",
                    "budget": t.budget,
                    "compile_s": t.compile_s,
                    "seconds_per_step": _protocol.seconds_per_step(t),
                    "studies": [
                        {
                            "chosen": i,
                            "run_s": s.run_s,
                            "trials": [
                                {
                                    "config": s.configs[j],
                                    "seed": s.seeds[j],
                                    "steps_to_target": s.steps_to_target[j],
                                    "seconds_to_target": s.seconds_to_target[j],
                                    "test": {k: v[j] for k, v in s.test.items()},
                                    "curve": {
                                        "step": s.steps.tolist(),
                                        "valid_metric": s.valid_metric[j].tolist(),
                                        "valid_loss": s.valid_loss[j].tolist(),
                                    },
                                }
                                for j in range(len(s.configs))
                            ],
                        }
                        for s, i in zip(t.studies, e.chosen, strict=True)
                    ],
                }
            workloads[w.name] = {
                "description": w.description,
                "kind": w.kind,
                "metric": w.metric,
                "target": w.target,
                "budget": w.budget,
                "optimizers": optimizers,
            }
        out = {
            "config": self.config,
            "scores": {m: self.scores(m) for m in MEASURES},
            "times": {m: self.times(m) for m in MEASURES},
            "ratios": {m: self.ratios(m) for m in MEASURES},
            "workloads": workloads,
        }
        return _clean(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def save(self, directory: str, *, plots: bool = True) -> list[str]:
        """Write ``results.json``, ``report.md`` and (with ``plots``) the PNG figures."""
        from optix.compare._bench_report import write

        return write(self, directory, plots=plots)


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
