"""Figures: loss curves, trajectories over contour plots, and loss against the learning rate.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot state), so saving them needs
no display and a notebook shows the one it is given.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from optix.compare._results import ProblemResult

KINDS = ("loss", "paths", "lr")


def _figure(ax: Any) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'optix[compare]'") from err
    fig = Figure(figsize=(7.0, 4.8), layout="constrained")
    return fig, fig.add_subplot()


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _shifted(result: ProblemResult) -> str:
    f_min = result.problem.f_min
    return "loss" if f_min == 0 else f"loss - min ({f_min:.3g})"


def plot_loss(result: ProblemResult, ax: Any = None) -> Any:
    """Training loss (minus the known minimum) against steps, log scale, at each best rate."""
    fig, ax = _figure(ax)
    for s, color in zip(result.summaries, _colors(len(result.summaries)), strict=True):
        curves = s.run.loss[s.best]  # (S, E + 1)
        steps = s.run.steps
        with warnings.catch_warnings():  # all seeds diverged: NaN, which is not drawn
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.where(np.isfinite(curves), curves, np.nan), axis=0)
        mean = np.where(mean > 0, mean, np.nan)
        ax.plot(steps, mean, color=color, lw=1.4, label=f"{s.label} (lr {s.lr:.2g})")
        if curves.shape[0] > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
            lo = np.where(lo > 0, lo, np.nan)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training {_shifted(result)}")
    ax.set_title(f"{result.problem.name}: training loss at each optimizer's best learning rate")
    ax.axhline(result.problem.target, color="0.6", ls=":", lw=1)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="major", alpha=0.3)
    return fig


def _grid(result: ProblemResult, n: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = result.problem
    assert p.box is not None
    (x0, x1), (y0, y1) = p.box
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    gx, gy = np.meshgrid(xs, ys)
    pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1), jnp.float32)
    train = None if p.data is None else (p.data.x_train, p.data.y_train)
    z = np.asarray(jax.jit(jax.vmap(lambda q: p.loss(q, train)))(pts)).reshape(gx.shape)
    return gx, gy, z - p.f_min


def plot_paths(result: ProblemResult, ax: Any = None) -> Any:
    """Each optimizer's path (first seed, best rate) over the contours of a 2-D problem."""
    p = result.problem
    if p.box is None:
        raise ValueError(f"problem {p.name!r} is not 2-D: it has no contour plot")
    fig, ax = _figure(ax)
    gx, gy, z = _grid(result)
    levels = np.logspace(np.log10(max(np.min(z), 1e-6) + 1e-6), np.log10(np.max(z) + 1e-6), 25)
    from matplotlib.colors import LogNorm

    zz = np.maximum(z, 1e-6) + 1e-6
    norm = LogNorm(levels[0], levels[-1])
    ax.contourf(gx, gy, zz, levels=levels, cmap="Blues_r", norm=norm, alpha=0.45)
    ax.contour(gx, gy, zz, levels=levels, colors="0.45", linewidths=0.4)
    for s, color in zip(result.summaries, _colors(len(result.summaries)), strict=True):
        assert s.run.path is not None
        path = s.run.path[s.best, 0]
        ok = np.all(np.isfinite(path), axis=1)
        path = path[ok]
        ax.plot(path[:, 0], path[:, 1], color=color, lw=1.3, label=f"{s.label} (lr {s.lr:.2g})")
        ax.plot(path[-1:, 0], path[-1:, 1], "o", color=color, ms=4)
    first = result.summaries[0].run.path if result.summaries else None
    if first is not None:
        start = first[0, 0, 0]
        ax.plot(start[0], start[1], "ks", ms=6, label="start")
    for m in p.minima:
        ax.plot(m[0], m[1], "*", color="gold", mec="k", ms=13)
    (x0, x1), (y0, y1) = p.box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(f"{p.name}: trajectories (star: minimum)")
    ax.legend(fontsize=7, ncol=2, loc="best")
    return fig


def plot_lr(result: ProblemResult, ax: Any = None) -> Any:
    """Final training loss (mean over seeds) against the learning rate; gaps are divergences."""
    fig, ax = _figure(ax)
    for s, color in zip(result.summaries, _colors(len(result.summaries)), strict=True):
        r = s.run
        final = np.where(r.diverged, np.nan, r.loss[..., -1])
        mean = final.mean(axis=1)  # NaN where any seed diverged
        mean = np.where(mean > 0, mean, np.nan)
        ax.plot(r.lrs, mean, "o-", color=color, ms=3, lw=1.2, label=s.label)
        bad = np.isnan(final).any(axis=1)
        if bad.any():
            top = np.nanmax(mean) if np.isfinite(mean).any() else 1.0
            ax.plot(r.lrs[bad], np.full(bad.sum(), top * 3), "x", color=color, ms=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final training {_shifted(result)}")
    ax.set_title(f"{result.problem.name}: learning-rate sensitivity (x: diverged)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="major", alpha=0.3)
    return fig


def plot(result: ProblemResult, kind: str, ax: Any = None) -> Any:
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return {"loss": plot_loss, "paths": plot_paths, "lr": plot_lr}[kind](result, ax=ax)


def figures(result: ProblemResult) -> dict[str, Any]:
    """Every figure that makes sense for this problem, by kind."""
    out = {"loss": plot_loss(result)}
    if result.problem.box is not None:
        out["paths"] = plot_paths(result)
    if any(len(s.run.lrs) > 1 for s in result.summaries):
        out["lr"] = plot_lr(result)
    return out
