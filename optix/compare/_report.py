"""The results of a comparison (:class:`Results`), their terminal table, ``results.json``,
``report.md`` and the output directory."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optix.compare import _plots
from optix.compare._results import ProblemResult
from optix.compare._results import Summary
from optix.compare._text import num
from optix.compare._text import table
from optix.compare._text import write_files


def _clean(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in np.ravel(values)]


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
        return text_table(self)

    def plot(self, kind: str = "loss", problem: str | None = None, ax: Any = None) -> Any:
        """A matplotlib figure: ``kind`` is ``"loss"`` (curves), ``"paths"`` (trajectories over
        the contours of a 2-D problem) or ``"lr"`` (final loss against the swept learning rate).
        ``problem`` defaults to the first one; with ``ax``, draws into that axes instead."""
        result = self.problems[0] if problem is None else self[problem]
        return _plots.plot(result, kind, ax=ax)

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
        return write(self, directory, plots=plots)


def _metric(s: Summary, name: str, fmt: str, seeds: int) -> str:
    m = s.metrics.get(name)
    if m is None or m["mean"] is None:
        return "-"
    text = num(m["mean"], fmt)
    if seeds > 1:
        text += " ± " + num(m["std"], fmt)
        n = sum(v is not None for v in m["values"])
        if n < seeds:
            text += f" ({n}/{seeds})"
    return text


def _rows(result: ProblemResult, seeds: int) -> tuple[list[str], list[list[str]]]:
    has_test = any("test_acc" in s.metrics for s in result.summaries)
    target = result.problem.target
    header = ["optimizer", "batch", "lr", "final loss", "best loss"]
    if has_test:
        header += ["test acc", "gap"]
    header += [f"steps to {target:g}", "diverged", "compile s", "ms/step"]
    rows = []
    for s in result.summaries:
        r = s.run
        lr = f"{s.lr:.3g}" + ("!" if s.lr_at_edge else "")
        row = [s.label, str(r.batch_size or "full"), lr]
        row += [_metric(s, "final_loss", ".3g", seeds), _metric(s, "best_loss", ".3g", seeds)]
        if has_test:
            row += [_metric(s, "test_acc", ".3f", seeds), _metric(s, "gap", ".3f", seeds)]
        diverged = "no" if not s.diverged else ("yes" if seeds == 1 else f"{s.diverged}/{seeds}")
        if r.swept and len(r.lrs) > 1:
            diverged += f" ({s.diverged_lrs}/{len(r.lrs)} lr)"
        row += [
            _metric(s, "steps_to_target", ".0f", seeds),
            diverged,
            f"{r.compile_s:.2f}",
            f"{1e3 * s.step_s:.3f}",
        ]
        rows.append(row)
    return header, rows


def _notes(result: ProblemResult, results: Results) -> list[str]:
    p = result.problem
    cfg = results.config
    steps = result.summaries[0].run.steps[-1] if result.summaries else 0
    notes = [f"{p.name}: {p.description}", f"{steps} steps, {cfg['seeds']} seed(s)"]
    if p.f_min != 0:
        notes.append(f"losses are shown as loss - min ({p.f_min:.4g})")
    if cfg.get("lr_sweep"):
        lo, hi, n = cfg["lr_sweep"][0], cfg["lr_sweep"][-1], len(cfg["lr_sweep"])
        notes.append(f"lr: best of {n} rates {lo:.2g}..{hi:.2g} by final training loss")
        notes.append("(! = best at the edge of the sweep)")
    notes += [f"skipped {s}" for s in result.skipped]
    return notes


def text_table(results: Results) -> str:
    seeds = results.config["seeds"]
    blocks = []
    for result in results.problems:
        lines = ["# " + line for line in _notes(result, results)]
        lines += table(*_rows(result, seeds))
        blocks.append("\n".join(lines))
    footer = (
        "compile s: seconds to compile one optimizer's step; ms/step: wall time of one step of all "
        "its learning rates and seeds together (one vmapped step)."
    )
    return "\n\n".join(blocks) + "\n\n" + footer


def markdown(results: Results, images: dict[str, dict[str, str]]) -> str:
    seeds = results.config["seeds"]
    out = [
        "# optix optimizer comparison",
        "",
        f"Command: `{results.config.get('command', 'optix.compare.run(...)')}`",
        "",
    ]
    for result in results.problems:
        header, rows = _rows(result, seeds)
        out += [f"## {result.problem.name}", ""]
        out += [f"- {n}" for n in _notes(result, results)]
        out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
        for kind, name in images.get(result.problem.name, {}).items():
            out += [f"![{result.problem.name} {kind}]({name})", ""]
    return "\n".join(out)


def write(results: Results, directory: str, *, plots: bool = True) -> list[str]:
    """Write the figures, ``results.json`` and ``report.md`` into ``directory``; return paths."""
    figures: dict[str, dict[str, Any]] = {}
    if plots:  # build every figure before touching the directory
        figures = {r.problem.name: _plots.figures(r) for r in results.problems}
    images = {name: {kind: f"{name}_{kind}.png" for kind in figs} for name, figs in figures.items()}
    files = {images[n][k]: fig for n, figs in figures.items() for k, fig in figs.items()}
    texts = {"results.json": results.to_json(), "report.md": markdown(results, images)}
    return write_files(directory, files, texts, dpi=110)
