"""The figures of a benchmark run: performance profiles, tuning curves, validation curves.

Each function takes a :class:`optix.compare.Benchmark` (typed ``Any`` here: the benchmark's
module imports this one) and returns a matplotlib figure; matplotlib is imported only when a
figure is drawn.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from optix.compare._scoring import performance_profile

KINDS = ("profiles", "tuning", "curves")


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _figure(ax: Any, n: int = 1) -> tuple[Any, list[Any]]:
    if ax is not None:
        return ax.figure, [ax] * n
    from matplotlib.figure import Figure

    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _chosen(b: Any, workload: str | None) -> list:
    if workload is None:
        return list(b.workloads)
    ws = [w for w in b.workloads if w.name == workload]
    if not ws:
        names = ", ".join(w.name for w in b.workloads)
        raise ValueError(f"no workload {workload!r} in this benchmark; it has {names}")
    return ws


def plot_profiles(b: Any, ax: Any = None, workload: str | None = None) -> Any:
    if workload is not None:
        raise ValueError("a performance profile spans all workloads: give no workload")
    fig, axes = _figure(ax, 1 if ax is not None else 2)
    taus = np.linspace(1.0, 4.0, 601)
    for a, measure in zip(axes, ("steps", "seconds") if ax is None else ("steps",), strict=False):
        rho = performance_profile(b.times(measure), taus)
        scores = b.scores(measure)
        for (o, r), color in zip(rho.items(), _colors(len(rho)), strict=True):
            a.step(taus, r, where="post", color=color, lw=1.4, label=f"{o} ({scores[o]:.2f})")
        a.set_xlabel(f"tau (time in {measure} / best optimizer's)")
        a.set_ylabel("fraction of workloads within tau")
        a.set_ylim(-0.03, 1.03)
        a.set_title(f"performance profiles by {measure} (B in legend)")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=7, ncol=2)
    return fig


def plot_tuning(b: Any, ax: Any = None, workload: str | None = None) -> Any:
    ws = _chosen(b, workload)
    fig, axes = _figure(ax, len(ws))
    for a, w in zip(axes, ws, strict=True):
        for o, color in zip(b.labels, _colors(len(b.labels)), strict=True):
            curve = b.entries[o][w.name].tuning_curve()
            a.plot(np.arange(1, len(curve) + 1), curve, "o-", ms=3, color=color, label=o)
        a.axhline(w.target, color="0.5", ls=":", lw=1)
        a.set_xlabel("trials")
        a.set_ylabel(f"best validation {w.metric}")
        a.set_yscale("log")
        a.set_title(f"{w.name}: tuning curve (median over studies)", fontsize=9)
        a.grid(True, alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    return fig


def plot_curves(b: Any, ax: Any = None, workload: str | None = None) -> Any:
    ws = _chosen(b, workload)
    fig, axes = _figure(ax, len(ws))
    for a, w in zip(axes, ws, strict=True):
        for o, color in zip(b.labels, _colors(len(b.labels)), strict=True):
            e = b.entries[o][w.name]
            s = e.trials.studies[0]
            y = s.valid_metric[e.chosen[0]] - (w.f_min if w.metric == "loss" else 0.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                y = np.where(y > 0, y, np.nan)
            a.plot(s.steps, y, color=color, lw=1.2, label=o)
        a.axhline(w.target - (w.f_min if w.metric == "loss" else 0.0), color="0.5", ls=":", lw=1)
        a.set_xlabel("step")
        a.set_ylabel(f"validation {w.metric}")
        a.set_yscale("log")
        a.set_title(f"{w.name}: chosen trial of study 1 (dotted: target)", fontsize=9)
        a.grid(True, alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    return fig


def plot(b: Any, kind: str, ax: Any = None, workload: str | None = None) -> Any:
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    fn = {"profiles": plot_profiles, "tuning": plot_tuning, "curves": plot_curves}[kind]
    return fn(b, ax, workload)
