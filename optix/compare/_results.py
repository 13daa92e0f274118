"""Results of a comparison: the best learning rate per optimizer, metrics over seeds, JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optix.compare._problems import Problem
from optix.compare._runner import Run


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Mean and std over seeds of the finite values, plus every value (None where not finite)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std()) if finite.size else None,
        "values": [float(v) if math.isfinite(v) else None for v in values],
    }


def _clean(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in np.ravel(values)]


@dataclass
class Summary:
    """One optimizer on one problem, at its best learning rate.

    ``metrics`` maps a metric name to ``{"mean", "std", "values"}`` over seeds. Losses are
    ``loss - f_min`` (the problem's known minimum; 0 for the classifiers).
    """

    run: Run
    best: int
    metrics: dict[str, dict[str, Any]]
    diverged: int
    diverged_lrs: int
    note: str = ""

    @property
    def label(self) -> str:
        return self.run.spec.label

    @property
    def lr(self) -> float:
        return float(self.run.lrs[self.best])

    @property
    def lr_at_edge(self) -> bool:
        """The best rate is the smallest or largest in the sweep: widen the sweep."""
        return self.run.swept and len(self.run.lrs) > 1 and self.best in (0, len(self.run.lrs) - 1)

    @property
    def step_s(self) -> float:
        return self.run.run_s / max(int(self.run.steps[-1]), 1)


def summarize(problem: Problem, run: Run) -> Summary:
    final = np.where(run.diverged, np.nan, run.loss[..., -1])  # (L, S)
    score = np.where(np.isfinite(final), final, np.inf).mean(axis=1)
    best = int(np.argmin(score)) if np.isfinite(score).any() else 0
    curve = run.loss[best]  # (S, E + 1)
    best_loss = np.array(
        [np.min(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in curve]
    )
    reached = np.nan_to_num(curve, nan=np.inf) <= problem.target
    to_target = np.array(
        [run.steps[np.argmax(r)] if r.any() else np.nan for r in reached], np.float64
    )
    metrics = {
        "final_loss": _stats(final[best]),
        "best_loss": _stats(best_loss),
        "steps_to_target": _stats(to_target),
    }
    if run.test_acc is not None and run.test_loss is not None:
        ok = ~run.diverged[best]
        metrics["train_loss"] = _stats(np.where(ok, run.train_loss[best], np.nan))
        metrics["test_loss"] = _stats(np.where(ok, run.test_loss[best], np.nan))
        metrics["test_acc"] = _stats(np.where(ok, run.test_acc[best], np.nan))
        metrics["gap"] = _stats(np.where(ok, run.test_loss[best] - run.train_loss[best], np.nan))
    return Summary(
        run, best, metrics, int(run.diverged[best].sum()), int(run.diverged.any(axis=1).sum())
    )


@dataclass
class ProblemResult:
    problem: Problem
    summaries: list[Summary]
    skipped: list[str] = field(default_factory=list)


@dataclass
class Results:
    """What :func:`optix.compare.run` returns: one :class:`ProblemResult` per problem.

    ``table()`` gives the terminal table, ``plot(kind, problem)`` a matplotlib figure,
    ``to_json()`` the contents of ``results.json``, and ``save(directory)`` writes all of them
    with a ``report.md``.
    """

    problems: list[ProblemResult]
    config: dict[str, Any]

    def __getitem__(self, name: str) -> ProblemResult:
        for p in self.problems:
            if p.problem.name == name:
                return p
        raise KeyError(f"no problem {name!r} in these results")

    def best_lr(self, problem: str, label: str) -> float:
        """The chosen learning rate of optimizer ``label`` on ``problem``."""
        return next(s.lr for s in self[problem].summaries if s.label == label)

    def table(self) -> str:
        from optix.compare._report import text_table

        return text_table(self)

    def plot(self, kind: str = "loss", problem: str | None = None, ax: Any = None) -> Any:
        """A matplotlib figure: ``kind`` is ``"loss"`` (curves), ``"paths"`` (trajectories over
        the contours of a 2-D problem) or ``"lr"`` (final loss against the swept learning rate).
        ``problem`` defaults to the first one; with ``ax``, draws into that axes instead."""
        from optix.compare._plots import plot

        result = self.problems[0] if problem is None else self[problem]
        return plot(result, kind, ax=ax)

    def to_dict(self) -> dict[str, Any]:
        problems = {}
        for pr in self.problems:
            p = pr.problem
            optimizers = {}
            for s in pr.summaries:
                r = s.run
                entry: dict[str, Any] = {
                    "optimizer": r.spec.name,
                    "options": {k: repr(v) for k, v in r.spec.kwargs.items()},
                    "batch_size": r.batch_size or "full",
                    "learning_rate": s.lr,
                    "lr_swept": r.swept,
                    "lr_at_edge_of_sweep": s.lr_at_edge,
                    "metrics": s.metrics,
                    "diverged_seeds": s.diverged,
                    "diverged_lrs": s.diverged_lrs,
                    "compile_s": r.compile_s,
                    "time_per_step_s": s.step_s,
                    "sweep": {
                        "learning_rate": [float(x) for x in r.lrs],
                        "final_loss_mean": _clean(
                            np.where(r.diverged, np.nan, r.loss[..., -1]).mean(axis=1)
                        ),
                    },
                    "curve": {
                        "step": [int(x) for x in r.steps],
                        "loss_mean": _clean(np.mean(r.loss[s.best], axis=0)),
                    },
                }
                if r.path is not None:
                    entry["path"] = [_clean(pt) for pt in r.path[s.best, 0]]
                optimizers[s.label] = entry
            problems[p.name] = {
                "description": p.description,
                "f_min": p.f_min,
                "target": p.target,
                "options": p.options,
                "optimizers": optimizers,
                "skipped": pr.skipped,
            }
        return {"config": self.config, "problems": problems}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def save(self, directory: str, *, plots: bool = True) -> list[str]:
        """Write ``results.json``, ``report.md`` and (with ``plots``) the PNG figures."""
        from optix.compare._report import write

        return write(self, directory, plots=plots)
