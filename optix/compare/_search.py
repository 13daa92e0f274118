r"""Search spaces, quasi-random search and the three tuning rulesets.

A configuration is a dict: values of hyperparameters that live in the optimizer state (set with
``optix.set_hyperparams``, so every configuration trains in the same compiled step), plus
``warmup`` (the fraction of the budget spent warming the learning rate up linearly from 0) and
``schedule`` (``"constant"`` or ``"cosine"``, a cosine decay to 0 at the end of the budget).

Hyperparameters that change the structure of the computation (``nesterov``, the batch size,
``amsgrad``) are not searched: they are fixed per optimizer (``nesterov`` is its own entry).

Search points come from a Halton sequence (Halton 1960) with a random shift per dimension
drawn from ``seed`` (a Cranley-Patterson rotation), which covers the space more evenly than
independent uniform draws: https://doi.org/10.1007/BF01386213. Each coordinate ``u`` in ``[0, 1)``
maps to a range: ``log`` ranges are log-uniform, ``1-log`` ranges are for decay rates (``1 - beta``
log-uniform, so ``0.9`` and ``0.999`` are as likely as ``0.5`` and ``0.9``), ``choice`` picks one.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optix.compare._spec import PRESETS
from optix.compare._spec import OptimizerSpec

RULESETS = ("external", "self", "lr-sweep")
SCHEDULES = ("constant", "cosine")
SELF_BUDGET_FACTOR = 1.5
"""The ``self`` ruleset runs each workload for this many times its step budget (AlgoPerf)."""

_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53)


@dataclass(frozen=True)
class Dim:
    """One searched hyperparameter: ``kind`` is ``"log"``, ``"1-log"``, ``"uniform"`` or
    ``"choice"``; ``lo``/``hi`` bound the value (for ``"1-log"``: bound ``1 - value``)."""

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    choices: tuple[str, ...] = ()

    def value(self, u: float) -> Any:
        if self.kind == "log":
            return float(math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo))))
        if self.kind == "1-log":
            return 1.0 - Dim(self.name, "log", self.lo, self.hi).value(u)
        if self.kind == "uniform":
            return float(self.lo + u * (self.hi - self.lo))
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(self.choices)}}}"
        if self.kind == "1-log":
            return f"1 - {self.name} log-uniform in [{self.lo:g}, {self.hi:g}]"
        return f"{self.name} {self.kind}-uniform in [{self.lo:g}, {self.hi:g}]".replace(
            "uniform-uniform", "uniform"
        )


def _lr(lo: float, hi: float) -> Dim:
    return Dim("learning_rate", "log", lo, hi)


_B1, _B2 = Dim("b1", "1-log", 0.02, 0.5), Dim("b2", "1-log", 1e-3, 0.1)
_WD = Dim("weight_decay", "log", 1e-5, 1e-1)
_MOM = Dim("momentum", "1-log", 0.01, 0.5)
_WARMUP = Dim("warmup", "uniform", 0.0, 0.1)
_SCHEDULE = Dim("schedule", "choice", choices=SCHEDULES)

SPACES: dict[str, tuple[Dim, ...]] = {
    "gd": (_lr(1e-3, 1.0),),
    "sgd1": (_lr(1e-4, 0.3),),
    "sgd": (_lr(1e-3, 1.0),),
    "momentum": (_lr(1e-3, 1.0), _MOM),
    "nesterov": (_lr(1e-3, 1.0), _MOM),
    "adagrad": (_lr(1e-3, 1.0),),
    "rmsprop": (_lr(1e-4, 1e-1), Dim("decay", "1-log", 1e-3, 0.3)),
    "adadelta": (_lr(0.1, 30.0), Dim("rho", "1-log", 1e-3, 0.3)),
    "adam": (_lr(1e-4, 1e-1), _B1, _B2),
    "adamw": (_lr(1e-4, 1e-1), _B1, _B2, _WD),
    "nadam": (_lr(1e-4, 1e-1), _B1, _B2),
    "lion": (_lr(1e-5, 1e-2), _B1, Dim("b2", "1-log", 1e-3, 0.1), Dim("weight_decay", "log", 1e-4, 1.0)),
    "prodigy": (_lr(0.1, 10.0), _B1, _B2, _WD),
    "dadapt_adamw": (_lr(0.1, 10.0), _B1, _B2, _WD),
    "schedule_free_adamw": (_lr(1e-4, 1e-1), _B1, _B2, _WD),
    "schedule_free_sgd": (_lr(1e-2, 10.0), _B1, _WD),
}  # fmt: skip
"""Each optimizer's fixed, workload-agnostic search space (besides warm-up and schedule)."""

NO_SCHEDULE = ("schedule_free_adamw", "schedule_free_sgd")
"""Schedule-free methods replace the decay schedule: they search warm-up only."""

SELF_LR = {"gd": 0.1, "sgd1": 0.01, "sgd": 0.1, "momentum": 0.01, "nesterov": 0.01,
           "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3,
           "lion": 1e-4}  # fmt: skip
"""Learning rates for the ``self`` ruleset where the optix function has no default (PyTorch's
defaults, and Lion's paper's 3-10x below AdamW's); everything else uses the function's own."""


def _default_lr(spec: OptimizerSpec) -> float | None:
    default = inspect.signature(spec.factory).parameters["learning_rate"].default
    if isinstance(default, int | float) and not isinstance(default, bool):
        return float(default)
    return None


def given(spec: OptimizerSpec) -> dict[str, Any]:
    """The options the user gave (a preset's own options, such as momentum's 0.9, are not)."""
    preset = PRESETS[spec.name].kwargs if spec.name in PRESETS else {}
    return {k: v for k, v in spec.kwargs.items() if k not in preset or preset[k] != v}


def space(spec: OptimizerSpec) -> tuple[Dim, ...]:
    """The searched dimensions of ``spec`` (what its spec fixes is left out)."""
    dims = SPACES.get(spec.name)
    if dims is None:  # any other optix optimizer: its learning rate, 30x either side
        d = _default_lr(spec) or 1e-2
        dims = (_lr(d / 30, d * 30),)
    dims = tuple(d for d in dims if d.name not in given(spec))
    if spec.learning_rate is not None:
        dims = tuple(d for d in dims if d.name != "learning_rate")
    extra = (_WARMUP,) if spec.name in NO_SCHEDULE else (_WARMUP, _SCHEDULE)
    return dims + extra


def halton(n: int, dims: int, seed: int = 0) -> np.ndarray:
    r"""``(n, dims)`` points of the Halton sequence in ``[0, 1)``, shifted modulo 1 by a random
    vector drawn from ``seed`` (deterministic given ``seed``); index 0 (the origin) is skipped.
    """
    if dims > len(_PRIMES):
        raise ValueError(f"at most {len(_PRIMES)} search dimensions, got {dims}")
    out = np.zeros((n, dims))
    for j, base in enumerate(_PRIMES[:dims]):
        for i in range(n):
            k, f, x = i + 1, 1.0, 0.0
            while k > 0:
                f /= base
                x += f * (k % base)
                k //= base
            out[i, j] = x
    if seed is not None:
        out = np.mod(out + np.random.default_rng(seed).random(dims), 1.0)
    return out


def fixed_config(spec: OptimizerSpec) -> dict[str, Any]:
    """The values the spec fixes: its learning rate and hyperparameters that are searched."""
    out: dict[str, Any] = {}
    if spec.learning_rate is not None:
        out["learning_rate"] = spec.learning_rate
    names = {d.name for d in SPACES.get(spec.name, ())}
    out.update({k: float(v) for k, v in given(spec).items() if k in names})
    return out


def external(spec: OptimizerSpec, studies: int, trials: int, seed: int = 0) -> list[list[dict]]:
    """``studies`` lists of ``trials`` quasi-random configurations from the search space."""
    dims = space(spec)
    points = halton(studies * trials, len(dims), seed)
    base = fixed_config(spec)
    configs = [
        {**base, **{d.name: d.value(u) for d, u in zip(dims, p, strict=True)}} for p in points
    ]
    for c in configs:
        c.setdefault("schedule", "constant")
    return [configs[s * trials : (s + 1) * trials] for s in range(studies)]


def self_config(spec: OptimizerSpec) -> dict[str, Any]:
    """The one configuration of the ``self`` ruleset: defaults, no warm-up, constant."""
    lr = spec.learning_rate or _default_lr(spec) or SELF_LR.get(spec.name, 1e-2)
    return {**fixed_config(spec), "learning_rate": lr, "warmup": 0.0, "schedule": "constant"}


def lr_grid(spec: OptimizerSpec, n: int) -> list[dict[str, Any]]:
    """``n`` learning rates log-spaced over the optimizer's search range, the rest default."""
    dim = next((d for d in space(spec) if d.name == "learning_rate"), None)
    base = self_config(spec)
    if dim is None:  # the spec fixes the rate: nothing to sweep
        return [base]
    rates = np.logspace(math.log10(dim.lo), math.log10(dim.hi), n) if n > 1 else [dim.lo]
    return [{**base, "learning_rate": float(r)} for r in rates]


def configurations(
    spec: OptimizerSpec, ruleset: str, studies: int, trials: int, seed: int = 0
) -> list[list[dict[str, Any]]]:
    """The configurations of each study of ``spec`` under ``ruleset``."""
    if ruleset == "external":
        return external(spec, studies, trials, seed)
    if ruleset == "self":
        return [[self_config(spec)] for _ in range(studies)]
    if ruleset == "lr-sweep":
        grid = lr_grid(spec, trials)
        return [[dict(c) for c in grid] for _ in range(studies)]
    raise ValueError(f"ruleset must be one of {', '.join(RULESETS)}, got {ruleset!r}")
