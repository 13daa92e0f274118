"""One optimizer on one problem at its best learning rate: metrics over seeds (:class:`Summary`),
collected per problem (:class:`ProblemResult`); :class:`optix.compare.Results` is in ``_report``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
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
