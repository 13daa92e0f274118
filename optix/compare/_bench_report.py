"""A benchmark's results (:class:`Benchmark`, one :class:`Entry` per optimizer and workload) and their
terminal table, figures (profiles, tuning curves, validation curves), ``results.json`` and
``report.md``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from optix.compare import _protocol
from optix.compare._bench_plots import KINDS
from optix.compare._bench_plots import plot
from optix.compare._scoring import benchmark_score
from optix.compare._scoring import performance_ratios
from optix.compare._spec import OptimizerSpec
from optix.compare._text import num
from optix.compare._text import table
from optix.compare._text import write_files
from optix.compare._workloads import Workload

FIGURES = {"profiles": "profiles.png", "tuning": "tuning_curves.png", "curves": "curves.png"}
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
        return text_table(self)

    def plot(self, kind: str = "profiles", workload: str | None = None, ax: Any = None) -> Any:
        """A matplotlib figure: ``"profiles"`` (performance profiles by steps and by seconds),
        ``"tuning"`` (best validation result against trials) or ``"curves"`` (validation curve of
        each optimizer's chosen trial); ``workload`` restricts the last two to one workload, and
        with ``ax`` the figure is drawn into that axes (profiles by steps only)."""
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
        return write(self, directory, plots=plots)


def _ruleset_line(b: Benchmark) -> str:
    c = b.config
    what = {
        "external": f"external tuning: {c['studies']} studies x {c['trials']} quasi-random trials "
        "per optimizer; per study the fastest trial to the validation target",
        "self": f"self-tuning: each optimizer's defaults, 1.5x the step budget, {c['studies']} "
        "studies (seeds)",
        "lr-sweep": f"learning-rate sweep: {c['trials']} rates, chosen by final validation loss, "
        f"{c['studies']} studies (seeds)",
    }[b.ruleset]
    return what + "; a workload's time is the median over studies (a miss counts as inf)"


def workload_rows(b: Benchmark, name: str) -> tuple[list[str], list[list[str]]]:
    w = next(w for w in b.workloads if w.name == name)
    ratios = b.ratios("steps")
    header = ["optimizer", "batch", "steps", "seconds", "ratio", "hit", "valid " + w.metric]
    has_test = w.test is not None
    if has_test:
        header += ["test " + w.metric]
    header += ["compile s", "chosen configuration"]
    rows = []
    for o in b.labels:
        e = b.entries[o][name]
        cfg = e.config()
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in cfg.items())  # fmt: skip
        row = [o, str(e.trials.batch_size or "full"), num(e.steps, ".0f"),
               num(e.seconds, ".2f"), num(ratios[o][name], ".2f"),
               f"{e.hits}/{len(e.chosen)}", num(e.valid(), ".4g")]  # fmt: skip
        if has_test:
            row.append(num(e.test().get(w.metric), ".4g"))
        row += [f"{e.trials.compile_s:.2f}", text if e.same_as is None else f"same as {e.same_as}"]
        rows.append(row)
    return header, rows


def _score_rows(b: Benchmark) -> tuple[list[str], list[list[str]]]:
    steps, seconds = b.scores("steps"), b.scores("seconds")
    order = sorted(b.labels, key=lambda o: (-steps[o], -seconds[o]))
    solved = {o: sum(math.isfinite(t) for t in b.times("steps")[o].values()) for o in b.labels}
    rows = [[o, f"{steps[o]:.3f}", f"{seconds[o]:.3f}", f"{solved[o]}/{len(b.workloads)}"]
            for o in order]  # fmt: skip
    return ["optimizer", "score (steps)", "score (seconds)", "workloads solved"], rows


def text_table(b: Benchmark) -> str:
    blocks = []
    for w in b.workloads:
        lines = [f"# {w.name}: {w.description}",
                 f"# target: validation {w.metric} <= {w.target:g} within {w.budget} steps"]  # fmt: skip
        lines += table(*workload_rows(b, w.name), text_last=True)
        blocks.append("\n".join(lines))
    header, *rest = table(*_score_rows(b))
    score = ["# benchmark score B (AlgoPerf, r_max = 4): 1 = fastest on every workload", header]
    score += rest[1:]  # no rule under the header
    footer = (
        f"{_ruleset_line(b)}.\nsteps/seconds: median time to the validation target (seconds "
        "include compile); ratio: steps over the best optimizer's; hit: studies that reached it; "
        "test values are reported, never used to choose."
    )
    return "\n\n".join([*blocks, "\n".join(score), footer])


def recommendations(b: Benchmark) -> list[str]:
    """One line per workload: which optimizer to pick and why."""
    out = []
    for w in b.workloads:
        ranked = sorted(b.labels, key=lambda o: (b.entries[o][w.name].steps,
                                                 b.entries[o][w.name].seconds))  # fmt: skip
        best = b.entries[ranked[0]][w.name]
        if not math.isfinite(best.steps):
            out.append(f"- **{w.name}**: no optimizer reached validation {w.metric} <= "
                       f"{w.target:g} in the median study; raise the budget or the trials.")  # fmt: skip
            continue
        why = (f"reaches validation {w.metric} <= {w.target:g} in a median {best.steps:.0f} "
               f"steps ({best.seconds:.1f} s with compile), in {best.hits}/{len(best.chosen)} "
               "studies")  # fmt: skip
        if len(ranked) > 1:
            o2 = ranked[1]
            e2 = b.entries[o2][w.name]
            if math.isfinite(e2.steps):
                why += f"; next: {o2} ({e2.steps:.0f} steps, {e2.steps / max(best.steps, 1):.2f}x)"
            else:
                why += "; no other optimizer reached the target in the median study"
        out.append(f"- **{w.name}** ({w.kind}): pick **{ranked[0]}**: {why}.")
    return out


def markdown(b: Benchmark, images: dict[str, str]) -> str:
    scores = b.scores("steps")
    best = max(scores.values())
    tops = [r[0] for r in _score_rows(b)[1] if scores[r[0]] == best]
    who = f"**{tops[0]}** has" if len(tops) == 1 else ", ".join(f"**{o}**" for o in tops) + " share"
    out = ["# optix optimizer benchmark", "",
           f"Command: `{b.config.get('command', 'optix.compare.run(...)')}`", "",
           f"Protocol: {_ruleset_line(b)}. Hyperparameters are chosen on the validation split; "
           "test results are reported beside.", "", "## Which optimizer to pick", ""]  # fmt: skip
    out += recommendations(b)
    out += ["", f"Across all workloads, {who} the best benchmark score (B = {best:.3f}, the "
            "normalized area under the performance profile of time in steps, up to 4x the best "
            "time).", "", "## Benchmark scores", ""]  # fmt: skip
    header, rows = _score_rows(b)
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
    if "profiles" in images:
        out += [f"![performance profiles]({images['profiles']})", ""]
    for w in b.workloads:
        header, rows = workload_rows(b, w.name)
        out += [f"## {w.name}", "", f"{w.description}. Target: validation {w.metric} <= "
                f"{w.target:g} within {w.budget} steps.", ""]  # fmt: skip
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out.append("")
    for kind in ("tuning", "curves"):
        if kind in images:
            out += [f"![{kind}]({images[kind]})", ""]
    out += ["## Search spaces", ""]
    out += [f"- {o}: {'; '.join(d)}" for o, d in b.config["search_spaces"].items()]
    env = b.config.get("environment", {})
    out += ["", "## Environment", "", ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    return "\n".join(out)


def write(b: Benchmark, directory: str, *, plots: bool = True) -> list[str]:
    """Write the figures, ``results.json`` and ``report.md`` into ``directory``; return paths."""
    figs = {}
    if plots:  # build every figure before touching the directory
        figs = {k: plot(b, k) for k in KINDS if k != "tuning" or b.config["trials"] > 1}
    images = {kind: FIGURES[kind] for kind in figs}
    texts = {"results.json": b.to_json(), "report.md": markdown(b, images)}
    return write_files(directory, {images[k]: fig for k, fig in figs.items()}, texts, dpi=100)
