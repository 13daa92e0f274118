r"""Scoring a benchmark: performance ratios, performance profiles and the AlgoPerf score.

``times[optimizer][workload]`` is the time an optimizer took to reach a workload's validation
target (``inf`` for a miss). Following AlgoPerf (Dahl et al. 2023,
https://arxiv.org/abs/2306.07179), each time is divided by the best time on that workload:

.. math::

   r_{o,w} = \frac{t_{o,w}}{\min_{o'} t_{o',w}}, \qquad
   \rho_o(\tau) = \frac{1}{|W|}\,\bigl|\{w : r_{o,w} \le \tau\}\bigr|, \qquad
   B_o = \frac{1}{r_{\max} - 1}\int_1^{r_{\max}} \rho_o(\tau)\,d\tau .

A workload that no optimizer solves gives every optimizer the ratio ``inf`` (AlgoPerf's
``inf / inf`` is NaN, which is never ``<= tau``: the same thing). :math:`\rho_o` is a step
function, and :math:`B_o` is its exact integral, :math:`\frac{1}{|W|}\sum_w
\max(0, r_{\max} - r_{o,w}) / (r_{\max} - 1)`; AlgoPerf's trapezoid rule over a grid of ``tau``
tends to the same number as the grid gets finer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np

Times = Mapping[str, Mapping[str, float]]


def _table(times: Times) -> tuple[list[str], list[str], np.ndarray]:
    """(optimizers, workloads, (O, W) array); every optimizer must have every workload."""
    optimizers = list(times)
    if not optimizers:
        raise ValueError("times is empty: give times[optimizer][workload]")
    workloads = list(times[optimizers[0]])
    if not workloads:
        raise ValueError(f"times[{optimizers[0]!r}] has no workloads")
    rows = []
    for o in optimizers:
        if set(times[o]) != set(workloads):
            raise ValueError(
                f"times[{o!r}] has workloads {sorted(times[o])}, expected {sorted(workloads)}"
            )
        row = [float(times[o][w]) for w in workloads]
        if any(math.isnan(t) or t < 0 for t in row):
            raise ValueError(f"times[{o!r}] must be >= 0 (inf for a miss), got {row}")
        rows.append(row)
    return optimizers, workloads, np.asarray(rows, np.float64)


def performance_ratios(times: Times) -> dict[str, dict[str, float]]:
    r"""Each time divided by the best time on its workload (``inf`` for a miss).

    Example:
      >>> from optix.compare import performance_ratios
      >>> performance_ratios({"a": {"w": 10.0}, "b": {"w": 25.0}})
      {'a': {'w': 1.0}, 'b': {'w': 2.5}}
    """
    optimizers, workloads, t = _table(times)
    best = t.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.isfinite(best) & np.isfinite(t), t / np.where(best > 0, best, 1.0), np.inf)
    r = np.where((best == 0) & (t == 0), 1.0, r)  # a zero time is the best
    r = np.where((best == 0) & (t > 0), np.inf, r)
    return {
        o: {w: float(r[i, j]) for j, w in enumerate(workloads)} for i, o in enumerate(optimizers)
    }


def performance_profile(times: Times, taus: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
    r""":math:`\rho_o(\tau)`: the fraction of workloads each optimizer solves within ``tau``
    times the best optimizer's time, at each ``tau`` (a step function, right-continuous).

    Example:
      >>> from optix.compare import performance_profile
      >>> times = {"a": {"w1": 10.0, "w2": float("inf")}, "b": {"w1": 20.0, "w2": 5.0}}
      >>> {k: v.tolist() for k, v in performance_profile(times, [1.0, 2.0]).items()}
      {'a': [0.5, 0.5], 'b': [0.5, 1.0]}
    """
    ratios = performance_ratios(times)
    taus = np.asarray(taus, np.float64).ravel()
    out = {}
    for o, by_workload in ratios.items():
        r = np.asarray(list(by_workload.values()))
        out[o] = (r[:, None] <= taus[None, :]).mean(axis=0)
    return out


def benchmark_score(times: Times, r_max: float = 4.0) -> dict[str, float]:
    r"""The AlgoPerf benchmark score :math:`B_o = \frac{1}{r_{\max}-1}\int_1^{r_{\max}}
    \rho_o(\tau)\,d\tau` of each optimizer, in ``[0, 1]``: 1 means fastest on every workload.

    Example:
      >>> from optix.compare import benchmark_score
      >>> benchmark_score({"a": {"w": 10.0}, "b": {"w": 25.0}})
      {'a': 1.0, 'b': 0.5}
    """
    if not (isinstance(r_max, int | float) and 1 < r_max < math.inf):
        raise ValueError(f"r_max must be a finite number > 1, got {r_max!r}")
    ratios = performance_ratios(times)
    out = {}
    for o, by_workload in ratios.items():
        r = np.asarray(list(by_workload.values()))
        out[o] = float(np.mean(np.maximum(0.0, r_max - r) / (r_max - 1.0)))
    return out
