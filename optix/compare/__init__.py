"""Compare optimizers on built-in problems: ``python -m optix.compare`` or :func:`run`.

Every learning rate of a sweep and every seed of one optimizer train together in one compiled,
vmapped step (the learning rate lives in the optimizer state). See ``docs/compare.md``.
"""

from optix.compare._api import DEFAULT_SWEEP as DEFAULT_SWEEP
from optix.compare._api import parse_sweep as parse_sweep
from optix.compare._api import run as run
from optix.compare._problems import DEFAULT_SUITE as DEFAULT_SUITE
from optix.compare._problems import PROBLEMS as PROBLEMS
from optix.compare._problems import Problem as Problem
from optix.compare._problems import make_problem as make_problem
from optix.compare._results import ProblemResult as ProblemResult
from optix.compare._results import Results as Results
from optix.compare._results import Summary as Summary
from optix.compare._spec import CLASSIC as CLASSIC
from optix.compare._spec import PRESETS as PRESETS
from optix.compare._spec import OptimizerSpec as OptimizerSpec
from optix.compare._spec import SpecError as SpecError
from optix.compare._spec import parse as parse_spec

__all__ = [
    "CLASSIC",
    "DEFAULT_SUITE",
    "DEFAULT_SWEEP",
    "PRESETS",
    "PROBLEMS",
    "OptimizerSpec",
    "Problem",
    "ProblemResult",
    "Results",
    "SpecError",
    "Summary",
    "make_problem",
    "parse_spec",
    "parse_sweep",
    "run",
]
