"""The command line: ``python -m optix.compare`` / ``optix-compare``.

Every argument is checked (and every problem and optimizer built) before anything runs or any
file is written; bad input gives a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from optix.compare._api import DEFAULT_SWEEP, prepare, run
from optix.compare._problems import DEFAULT_SUITE, PROBLEMS
from optix.compare._spec import CLASSIC

PROG = "optix-compare"

MAX_STEPS = 10**8
"""The most ``--steps`` the command line takes (far beyond any run that ends in reasonable time;
a larger number is most likely a typo, and would spend minutes before the first step)."""


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


def _steps(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_STEPS:,}, got {value:,}")
    return value


def _problems(text: str) -> list[str]:
    """The problem names of ``--problem``: 'all', or names given once each."""
    if text.strip() == "all":
        return list(PROBLEMS)
    names = [n.strip() for n in text.split(",")]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _BadInput(f"argument --problem: {name!r} is named twice")
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
        description="Compare optimizers on built-in problems: a table, figures, report.md and "
        "results.json. With no arguments: the classic optimizers on the default suite.",
    )
    p.add_argument(
        "--problem", default=",".join(DEFAULT_SUITE),
        help=f"comma-separated problems, or 'all' (default: {','.join(DEFAULT_SUITE)}); "
        f"valid: {', '.join(PROBLEMS)}",
    )  # fmt: skip
    p.add_argument(
        "--optimizers", default=CLASSIC,
        help="optimizer spec, e.g. 'adam:learning_rate=3e-4,sgd:momentum=0.9,batch=full' "
        f"(default: {CLASSIC})",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=_steps, help=f"steps per run, at most {MAX_STEPS:,} (default: per problem)"
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=32, help="mini-batch size (default: 32)"
    )
    p.add_argument(
        "--seeds", type=_positive_int, default=1,
        help="initializations per configuration, run together; reports mean ± std (default: 1)",
    )  # fmt: skip
    p.add_argument(
        "--lr-sweep", default=DEFAULT_SWEEP, metavar="LO:HI:N",
        help=f"tune each learning rate over N log-spaced rates in one vmapped run, or 'off' "
        f"(default: {DEFAULT_SWEEP}); a learning_rate given in the spec is kept",
    )  # fmt: skip
    p.add_argument("--condition", type=float, help="condition number of 'quadratic' (default 1000)")
    p.add_argument("--out", default="optix-compare-out", help="output directory")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(args_list)
        names = _problems(args.problem)
        _check_out(args.out)
        sweep = None if args.lr_sweep.lower() in ("off", "none", "") else args.lr_sweep
        kwargs = dict(
            steps=args.steps, batch_size=args.batch_size, seeds=args.seeds, lr_sweep=sweep,
            condition=args.condition,
        )  # fmt: skip
        prepare(names, args.optimizers, **kwargs)
    except (_BadInput, ValueError, ImportError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    results = run(names, args.optimizers, progress=True, **kwargs)
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
