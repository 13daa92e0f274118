"""The registry of optimizer cases that drives the contract suite.

Every per-case fact lives here, not in ``if name in [...]`` branches inside tests: the
reference the case is checked against, whether it supports complex params, whether its
``update`` needs ``params``, and the learning rate it uses on each convergence problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optix


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[..., optix.GradientTransformation]
    kwargs: dict[str, Any]
    reference: str  # where its numbers are checked: "torch", "optax" or "numpy"
    supports_complex: bool = True
    needs_params: bool = False
    # learning rate per convergence problem (quadratic, rosenbrock, logistic)
    lr: dict[str, float] = field(default_factory=dict)

    def make(self, **overrides: Any) -> optix.GradientTransformation:
        kwargs = {**self.kwargs, **overrides}
        return self.factory(**kwargs)

    def make_for(self, problem: str) -> optix.GradientTransformation:
        return self.make(learning_rate=self.lr[problem])


def _lr(quadratic: float, rosenbrock: float, logistic: float) -> dict[str, float]:
    return {"quadratic": quadratic, "rosenbrock": rosenbrock, "logistic": logistic}


CASES: list[Case] = [
    Case("sgd", optix.sgd, {"learning_rate": 0.05}, "torch", lr=_lr(0.05, 1e-3, 1.0)),
    Case(
        "momentum",
        optix.sgd,
        {"learning_rate": 0.02, "momentum": 0.9},
        "torch",
        lr=_lr(0.02, 2e-4, 0.5),
    ),
    Case(
        "nesterov",
        optix.sgd,
        {"learning_rate": 0.02, "momentum": 0.9, "nesterov": True},
        "torch",
        lr=_lr(0.02, 2e-4, 0.5),
    ),
    Case(
        "sgd_l2",
        optix.sgd,
        {"learning_rate": 0.05, "momentum": 0.5, "weight_decay": 1e-4},
        "torch",
        needs_params=True,
        lr=_lr(0.05, 5e-4, 1.0),
    ),
    Case("rmsprop", optix.rmsprop, {"learning_rate": 1e-2}, "torch", lr=_lr(0.02, 2e-3, 0.02)),
    Case(
        "rmsprop_centered_momentum",
        optix.rmsprop,
        {"learning_rate": 1e-2, "centered": True, "momentum": 0.5},
        "torch",
        lr=_lr(0.01, 1e-3, 0.01),
    ),
    Case("adagrad", optix.adagrad, {"learning_rate": 0.1}, "torch", lr=_lr(0.5, 0.2, 0.5)),
    Case("adadelta", optix.adadelta, {"learning_rate": 1.0}, "torch", lr=_lr(1.0, 1.0, 1.0)),
    Case("adam", optix.adam, {"learning_rate": 1e-2}, "torch", lr=_lr(0.05, 0.02, 0.05)),
    Case(
        "amsgrad",
        optix.adam,
        {"learning_rate": 1e-2, "amsgrad": True},
        "torch",
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case(
        "adamw",
        optix.adamw,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        "torch",
        needs_params=True,
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case("adamax", optix.adamax, {"learning_rate": 1e-2}, "torch", lr=_lr(0.05, 0.02, 0.05)),
    Case("nadam", optix.nadam, {"learning_rate": 1e-2}, "torch", lr=_lr(0.05, 0.02, 0.05)),
    Case("radam", optix.radam, {"learning_rate": 1e-2}, "torch", lr=_lr(0.05, 1e-3, 0.05)),
    Case(
        "noisy_sgd",
        optix.noisy_sgd,
        {"learning_rate": 0.05, "eta": 1e-4},
        "optax",
        lr=_lr(0.05, 1e-3, 1.0),
    ),
]

BY_NAME = {case.name: case for case in CASES}
IDS = [case.name for case in CASES]


# Every wrapper, as a function of the optimizer it wraps. Labels and masks refer to the contract
# suite's params tree: {"scalar": (), "vector": (5,), "layer": [(3, 4)]}.
LABELS = {"scalar": "other", "vector": "main", "layer": ["main"]}
WRAPPERS: dict[str, Callable[[optix.GradientTransformation], optix.GradientTransformation]] = {
    "partition": lambda tx: optix.partition({"main": tx, "other": optix.sgd(0.1)}, LABELS),
    "partition_patterns": lambda tx: optix.partition(
        {"main": tx, "other": optix.adam(1e-3)}, {"scalar": "other", "**": "main"}
    ),
    "masked": lambda tx: optix.masked(tx, {"scalar": False, "**": True}),
    "freeze": lambda tx: optix.freeze(["scalar"], tx),
    "accumulate": lambda tx: optix.accumulate(tx, 2),
    "skip_nonfinite": lambda tx: optix.skip_nonfinite(tx, max_consecutive=3),
    "lookahead": lambda tx: optix.lookahead(tx, 2, 0.5),
    "param_ema": lambda tx: optix.chain(tx, optix.param_ema(0.9)),
    "swa": lambda tx: optix.chain(tx, optix.swa(start_step=1)),
    "reduce_on_plateau": lambda tx: optix.chain(tx, optix.reduce_on_plateau(patience=1)),
    "nested": lambda tx: optix.skip_nonfinite(
        optix.partition(
            {
                "main": optix.accumulate(optix.chain(tx, optix.add_decayed_weights(1e-4)), 2),
                "other": optix.adamw(1e-3),
            },
            LABELS,
        )
    ),
}
WRAPPER_IDS = list(WRAPPERS)
