"""Benchmark optimizers the AlgoPerf way: ``python -m optix.compare`` or :func:`run`.

Each optimizer is tuned on each workload's validation split under a ruleset (``external``,
``self`` or ``lr-sweep``), its time to a validation target is measured, and the times are scored
with performance profiles. Every trial of a study trains in one compiled, vmapped step (all
hyperparameters live in the optimizer state). See ``docs/compare.md``.
"""

from optix.compare._api import DEFAULT_SWEEP as DEFAULT_SWEEP
from optix.compare._api import parse_sweep as parse_sweep
from optix.compare._api import run as run
from optix.compare._bench import DEFAULT_OPTIMIZERS as DEFAULT_OPTIMIZERS
from optix.compare._bench_report import Benchmark as Benchmark
from optix.compare._problems import DEFAULT_SUITE as DEFAULT_SUITE
from optix.compare._problems import PROBLEMS as PROBLEMS
from optix.compare._problems import Problem as Problem
from optix.compare._problems import make_problem as make_problem
from optix.compare._report import Results as Results
from optix.compare._results import ProblemResult as ProblemResult
from optix.compare._results import Summary as Summary
from optix.compare._scoring import benchmark_score as benchmark_score
from optix.compare._scoring import performance_profile as performance_profile
from optix.compare._scoring import performance_ratios as performance_ratios
from optix.compare._search import RULESETS as RULESETS
from optix.compare._spec import CLASSIC as CLASSIC
from optix.compare._spec import PRESETS as PRESETS
from optix.compare._spec import OptimizerSpec as OptimizerSpec
from optix.compare._spec import SpecError as SpecError
from optix.compare._spec import parse as parse_spec
from optix.compare._workloads import DEFAULT_WORKLOADS as DEFAULT_WORKLOADS
from optix.compare._workloads import WORKLOADS as WORKLOADS
from optix.compare._workloads import Split as Split
from optix.compare._workloads import Workload as Workload

__all__ = [
    "CLASSIC",
    "DEFAULT_OPTIMIZERS",
    "RULESETS",
    "Benchmark",
    "benchmark_score",
    "performance_profile",
    "performance_ratios",
    "DEFAULT_SUITE",
    "DEFAULT_SWEEP",
    "DEFAULT_WORKLOADS",
    "PRESETS",
    "PROBLEMS",
    "WORKLOADS",
    "OptimizerSpec",
    "Problem",
    "ProblemResult",
    "Results",
    "SpecError",
    "Split",
    "Summary",
    "Workload",
    "make_problem",
    "parse_spec",
    "parse_sweep",
    "run",
]
