"""The command line: ``python -m optix.compare`` / ``optix-compare``.

Every argument is checked (and every workload and optimizer built) before anything runs or any
file is written; bad input gives a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from optix.compare._bench import DEFAULT_OPTIMIZERS
from optix.compare._bench import prepare
from optix.compare._bench import run_benchmark
from optix.compare._search import RULESETS
from optix.compare._workloads import DEFAULT_WORKLOADS
from optix.compare._workloads import WORKLOADS

PROG = "optix-compare"

MAX_TRIALS = 1000
"""The most ``--trials`` the command line takes (all trials of a study train in one vmapped step,
so a typo such as 10**9 would exhaust memory before the first step)."""


class _BadInput(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise _BadInput(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _trials(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TRIALS:,}, got {value:,}")
    return value


def _workloads(text: str) -> list[str]:
    """The workload names of ``--workloads``: 'all', or names given once each."""
    if text.strip() == "all":
        return list(WORKLOADS)
    names = [n.strip() for n in text.split(",")]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _BadInput(f"argument --workloads: {name!r} is named twice")
    return names


def _check_out(path: str) -> None:
    """Raise ``_BadInput`` unless ``path`` is a directory this process can write, or can be made
    one (its nearest existing ancestor is a writable directory); nothing is created here."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise _BadInput(f"argument --out: {path!r} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise _BadInput(f"argument --out: directory {path!r} is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise _BadInput(f"argument --out: {parent!r} (in {path!r}) is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _BadInput(f"argument --out: cannot create {path!r}: {parent!r} is not writable")


def _parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description="Benchmark optimizers the AlgoPerf way: tune each on a validation split, "
        "measure the time to reach a validation target, score with performance profiles. "
        "Writes a table, figures, report.md and results.json. With no arguments: the classic "
        "and a few modern optimizers, external tuning, on the default workloads.",
    )
    p.add_argument(
        "--ruleset", default="external", choices=RULESETS,
        help="external: quasi-random search over each optimizer's search space (default); "
        "self: defaults only, 1.5x the budget; lr-sweep: a grid of learning rates",
    )  # fmt: skip
    p.add_argument(
        "--studies", type=_trials, default=3,
        help="independent studies (repeats with new seeds and configurations); the median "
        "counts (default: 3)",
    )  # fmt: skip
    p.add_argument(
        "--trials", type=_trials, default=5,
        help="configurations per study, trained together in one vmapped step (default: 5)",
    )  # fmt: skip
    p.add_argument(
        "--workloads", default=",".join(DEFAULT_WORKLOADS),
        help=f"comma-separated workloads, or 'all' (default: {','.join(DEFAULT_WORKLOADS)}); "
        f"valid: {', '.join(WORKLOADS)}",
    )  # fmt: skip
    p.add_argument(
        "--optimizers", default=DEFAULT_OPTIMIZERS,
        help="optimizer spec, e.g. 'adam,sgd:momentum=0.9,batch=full' (options given are fixed, "
        f"not searched) (default: {DEFAULT_OPTIMIZERS})",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the search and the runs")
    p.add_argument("--out", default="optix-compare-out", help="output directory")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(args_list)
        names = _workloads(args.workloads)
        _check_out(args.out)
        kwargs = dict(ruleset=args.ruleset, studies=args.studies, trials=args.trials)
        prepare(names, args.optimizers, **kwargs)
    except (_BadInput, ValueError, ImportError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    results = run_benchmark(names, args.optimizers, seed=args.seed, progress=True, **kwargs)
    results.config["command"] = " ".join(["python -m optix.compare", *map(shlex.quote, args_list)])
    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
    written = results.save(args.out, plots=not args.no_plots)
    if args.json:
        print(results.to_json())
    else:
        print(results.table())
        print(f"\nwrote {len(written)} files to {args.out}/ (report.md, results.json, figures)")
    return 0
