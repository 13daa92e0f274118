"""The registry of optimizer cases that drives the contract suite.

Every per-case fact lives here, not in ``if name in [...]`` branches inside tests: whether it
supports complex params, whether its ``update`` needs ``params``, and the learning rate it uses
on each convergence problem. How each optimizer's numbers are checked against a reference is the
reference registry's part: ``tests/references.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import jax

import optix


@dataclass(frozen=True)
class Case:
    name: str
    factory: Callable[..., optix.GradientTransformation]
    kwargs: dict[str, Any]
    supports_complex: bool = True
    needs_params: bool = False
    # learning rate per convergence problem (quadratic, rosenbrock, logistic)
    lr: dict[str, float] = field(default_factory=dict)
    # Results depend on the order of float sums beyond rounding, so a data-parallel run (pmap,
    # ZeRO) matches the single-device run only to a step's size, not to float tolerance.
    order_sensitive: bool = False
    # The largest step per element, in learning rates (for an order-sensitive case's tolerance):
    # 1 for Adam-like steps; more where a graft's uncorrected first moment inflates the first steps.
    step_scale: float = 1.0
    # Some state leaf shaped like a param sits at that param's path, so it takes its layout
    # (False for Shampoo: its per-leaf records hold a vector's diagonal statistic in a field).
    state_follows_params: bool = True

    def make(self, **overrides: Any) -> optix.GradientTransformation:
        kwargs = {**self.kwargs, **overrides}
        return self.factory(**kwargs)

    def make_for(self, problem: str) -> optix.GradientTransformation:
        return self.make(learning_rate=self.lr[problem])

    def parallel_atol(self, steps: int, default: float) -> float:
        """The atol of a data-parallel run after ``steps`` steps against the single-device run:
        ``default`` (float rounding), or twice the steps' size for an order-sensitive case."""
        if not self.order_sensitive:
            return default
        return 2 * steps * self.kwargs["learning_rate"] * self.step_scale


def _lr(quadratic: float, rosenbrock: float, logistic: float) -> dict[str, float]:
    return {"quadratic": quadratic, "rosenbrock": rosenbrock, "logistic": logistic}


CASES: list[Case] = [
    Case("sgd", optix.sgd, {"learning_rate": 0.05}, lr=_lr(0.05, 1e-3, 1.0)),
    Case(
        "momentum",
        optix.sgd,
        {"learning_rate": 0.02, "momentum": 0.9},
        lr=_lr(0.02, 2e-4, 0.5),
    ),
    Case(
        "nesterov",
        optix.sgd,
        {"learning_rate": 0.02, "momentum": 0.9, "nesterov": True},
        lr=_lr(0.02, 2e-4, 0.5),
    ),
    Case(
        "sgd_l2",
        optix.sgd,
        {"learning_rate": 0.05, "momentum": 0.5, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.05, 5e-4, 1.0),
    ),
    Case("rmsprop", optix.rmsprop, {"learning_rate": 1e-2}, lr=_lr(0.02, 2e-3, 0.02)),
    Case(
        "rmsprop_centered_momentum",
        optix.rmsprop,
        {"learning_rate": 1e-2, "centered": True, "momentum": 0.5},
        lr=_lr(0.01, 1e-3, 0.01),
    ),
    Case("adagrad", optix.adagrad, {"learning_rate": 0.1}, lr=_lr(0.5, 0.2, 0.5)),
    Case("adadelta", optix.adadelta, {"learning_rate": 1.0}, lr=_lr(1.0, 1.0, 1.0)),
    Case("adam", optix.adam, {"learning_rate": 1e-2}, lr=_lr(0.05, 0.02, 0.05)),
    Case(
        "amsgrad",
        optix.adam,
        {"learning_rate": 1e-2, "amsgrad": True},
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case(
        "adamw",
        optix.adamw,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case("adamax", optix.adamax, {"learning_rate": 1e-2}, lr=_lr(0.05, 0.02, 0.05)),
    Case("nadam", optix.nadam, {"learning_rate": 1e-2}, lr=_lr(0.05, 0.02, 0.05)),
    Case("radam", optix.radam, {"learning_rate": 1e-2}, lr=_lr(0.05, 1e-3, 0.05)),
    Case(
        "noisy_sgd",
        optix.noisy_sgd,
        {"learning_rate": 0.05, "eta": 1e-4},
        lr=_lr(0.05, 1e-3, 1.0),
    ),
    # schedule-free, parameter-free (learning_rate multiplies the estimated step) and SAM
    Case(
        "schedule_free_sgd",
        optix.schedule_free_sgd,
        {"learning_rate": 0.05, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.1, 1e-3, 1.0),
    ),
    Case(
        "schedule_free_adamw",
        optix.schedule_free_adamw,
        {"learning_rate": 1e-2, "warmup_steps": 5, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case(
        "prodigy",
        optix.prodigy,
        {"learning_rate": 1.0, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(1.0, 1.0, 1.0),
    ),
    Case(
        "dadapt_adamw",
        optix.dadapt_adamw,
        {"learning_rate": 1.0, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(1.0, 1.0, 1.0),
    ),
    Case(
        "sam",
        lambda learning_rate, rho=0.01: optix.sam(optix.adam(learning_rate), rho=rho),
        {"learning_rate": 1e-2},
        needs_params=True,
        lr=_lr(0.05, 0.02, 0.05),
    ),
    # L-BFGS. The contract suite passes no objective, so this case has no line search:
    # a fixed step length `learning_rate` along the L-BFGS direction (pairs with s.y <= 0 are
    # skipped). The line searches are tested in tests/test_lbfgs.py and tests/test_linesearch.py.
    Case(
        "lbfgs",
        optix.lbfgs,
        {"learning_rate": 0.5, "linesearch": None},
        needs_params=True,
        lr=_lr(1.0, 0.5, 1.0),
    ),
    # Adam variants and sign methods
    Case("adabelief", optix.adabelief, {"learning_rate": 1e-2}, lr=_lr(0.05, 0.05, 0.05)),
    Case("yogi", optix.yogi, {"learning_rate": 1e-2}, lr=_lr(0.05, 0.1, 0.05)),
    Case(
        "adopt",
        optix.adopt,
        {"learning_rate": 1e-2},
        supports_complex=False,  # the t^(1/4) clipping is undefined for complex numbers
        lr=_lr(0.05, 0.2, 0.05),
    ),
    Case(
        "ademamix",
        optix.ademamix,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.1, 0.02, 0.05),
    ),
    Case(
        "adan",
        optix.adan,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.1, 0.01, 0.05),
    ),
    Case(
        "lion",
        optix.lion,
        {"learning_rate": 1e-3, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.01, 0.005, 0.02),
    ),
    Case("sign_sgd", optix.sign_sgd, {"learning_rate": 1e-2}, lr=_lr(0.01, 1e-3, 0.02)),
    Case("signum", optix.signum, {"learning_rate": 1e-2}, lr=_lr(0.02, 2e-3, 0.02)),
    Case(
        "rprop",
        optix.rprop,
        {"learning_rate": 1e-2},
        supports_complex=False,  # compares gradient signs
        lr=_lr(0.01, 0.01, 0.01),
    ),
    # layer-wise (trust ratio) and factored optimizers
    Case(
        "lamb",
        optix.lamb,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.03, 0.01, 0.03),
    ),
    Case(
        "lars",
        optix.lars,
        {"learning_rate": 1e-2, "weight_decay": 1e-4, "trust_coefficient": 1.0},
        needs_params=True,
        lr=_lr(0.003, 0.001, 0.03),
    ),
    Case(
        "novograd",
        optix.novograd,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.01, 0.003, 0.03),
    ),
    Case(
        "fromage",
        optix.fromage,
        {"learning_rate": 1e-2},
        needs_params=True,
        lr=_lr(0.03, 0.01, 0.1),
    ),
    Case(
        "adafactor",
        optix.adafactor,
        {"learning_rate": 0.1},
        needs_params=True,
        lr=_lr(0.1, 0.03, 0.1),
    ),
    Case(
        "adafactor_factored_momentum",
        optix.adafactor,
        {
            "learning_rate": 0.01,
            "min_dim_size_to_factor": 2,  # factors the (3, 4) layer
            "momentum": 0.9,
            "multiply_by_parameter_scale": False,
            "weight_decay_rate": 1e-4,
        },
        needs_params=True,
        lr=_lr(0.03, 0.01, 0.03),
    ),
    Case("sm3", optix.sm3, {"learning_rate": 0.1}, lr=_lr(0.3, 0.3, 0.3)),
    # matrix optimizers
    Case(
        "muon",
        optix.muon,
        {"learning_rate": 0.02, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.02, 0.02, 0.05),
    ),
    Case(
        "shampoo",
        optix.shampoo,
        {"learning_rate": 0.1, "precondition_frequency": 2, "block_size": 2},
        supports_complex=False,
        state_follows_params=False,
        # inverse roots of a rank-deficient statistic (damped by eps) amplify rounding
        order_sensitive=True,
        lr=_lr(0.1, 0.3, 0.3),
    ),
    Case(
        "shampoo_eigenvalue_corrected",
        optix.shampoo,
        {
            "learning_rate": 0.1,
            "precondition_frequency": 2,
            "block_size": 2,
            "preconditioner": "eigenvalue_corrected",
            "graft": "rmsprop",
        },
        supports_complex=False,
        state_follows_params=False,
        # Adam-like scaling in the eigenbasis of a rank-deficient statistic (as SOAP)
        order_sensitive=True,
        # RMSprop's graft without bias correction: the first step is lr / sqrt(1 - 0.999) per
        # element, and a data-parallel run drifts by as much
        step_scale=1 / (1 - 0.999) ** 0.5,
        lr=_lr(0.1, 0.3, 0.3),
    ),
    Case(
        "soap",
        optix.soap,
        {"learning_rate": 1e-2, "weight_decay": 1e-4, "precondition_frequency": 2},
        supports_complex=False,
        needs_params=True,
        lr=_lr(0.01, 0.01, 0.03),
        # Adam in the eigenbasis of a rank-deficient statistic: the null-space eigenvectors are
        # arbitrary, and Adam scales the rounding-level gradient there up to a full step.
        order_sensitive=True,
    ),
    # optax.contrib ports (parameter-free ones: learning_rate multiplies the step)
    Case(
        "madgrad",
        optix.madgrad,
        {"learning_rate": 0.01, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.03, 0.01, 0.1),
    ),
    Case(
        "cocob",
        optix.cocob,
        {"learning_rate": 1.0, "weight_decay": 1e-4},
        supports_complex=False,  # bets on signed gradient-parameter products
        needs_params=True,
        lr=_lr(1.0, 1.0, 1.0),
    ),
    Case(
        "dog",
        optix.dog,
        {"learning_rate": 1.0, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(1.0, 1.0, 1.0),
    ),
    Case(
        "dowg",
        optix.dowg,
        {"learning_rate": 1.0, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(1.0, 1.0, 1.0),
    ),
    Case(
        "simplified_ademamix",
        optix.simplified_ademamix,
        {"learning_rate": 1e-3, "alpha": 2.0, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(3e-3, 1e-3, 1e-2),
    ),
    Case(
        "acprop",
        optix.acprop,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.01, 1e-3, 0.01),
    ),
    Case(
        "mechanize_adam",
        lambda learning_rate, **kw: optix.mechanize(optix.adam(learning_rate), **kw),
        {"learning_rate": 1.0, "weight_decay": 1e-2},
        supports_complex=False,  # the tuner's inner products are real
        needs_params=True,
        lr=_lr(1.0, 1.0, 1.0),
    ),
    Case(
        # squared gradients stand in for the Hessian diagonal: the contract suite passes no
        # objective (`obj_fn=`) for the default Hutchinson estimator
        "sophia",
        lambda learning_rate, **kw: optix.sophia(
            learning_rate,
            hessian_diagonal_fn=optix.stateless(lambda g, p: jax.tree.map(lambda x: x * x, g)),
            **kw,
        ),
        {"learning_rate": 1e-2, "weight_decay": 1e-4, "update_interval": 2},
        supports_complex=False,  # clips real ratios
        needs_params=True,
        lr=_lr(0.01, 0.01, 0.01),
    ),
    Case(
        "galore",
        optix.galore,
        {"learning_rate": 1e-2, "rank": 2, "update_proj_gap": 2, "weight_decay": 1e-4},
        supports_complex=False,  # real SVD projections
        needs_params=True,
        lr=_lr(0.03, 0.03, 0.03),
    ),
    # optax names optix lacked
    Case(
        "nadamw",
        optix.nadamw,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case(
        "adamaxw",
        optix.adamaxw,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case(
        "optimistic_gradient_descent",
        optix.optimistic_gradient_descent,
        {"learning_rate": 0.05},
        lr=_lr(0.05, 1e-3, 0.5),
    ),
    Case(
        "optimistic_adam",
        optix.optimistic_adam,
        {"learning_rate": 1e-2},
        lr=_lr(0.05, 0.02, 0.05),
    ),
    Case(
        "psgd_kron",
        optix.psgd_kron,
        {"learning_rate": 1e-2, "weight_decay": 1e-4},
        supports_complex=False,  # real triangular factors (psgd_jax's kron takes complex; not here)
        needs_params=True,
        lr=_lr(0.01, 3e-3, 0.03),
    ),
    Case(
        "normuon",
        optix.normuon,
        {"learning_rate": 0.02, "weight_decay": 1e-4},
        needs_params=True,
        lr=_lr(0.02, 0.02, 0.05),
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
    "monitor": lambda tx: optix.monitor(
        optix.skip_nonfinite(tx), groups={"matrices": "layer", "scalar": ["scalar"]}
    ),
    "nested": lambda tx: optix.skip_nonfinite(
        optix.partition(
            {
                "main": optix.accumulate(optix.chain(tx, optix.add_decayed_weights(1e-4)), 2),
                "other": optix.adamw(1e-3),
            },
            LABELS,
        )
    ),
    # act on bf16/float16 params only (the contract's float32 params pass through rounding;
    # Kahan compensates float32 params too)
    "stochastic_rounding": lambda tx: optix.stochastic_rounding(tx, seed=0),
    "kahan_summation": lambda tx: optix.kahan_summation(tx),
    # it scales a direction by its learned rate: the complete optimizer's step, negated, is one
    # (the learned rate starts at 1, a multiplier of the wrapped optimizer's own step)
    "hypergradient_descent": lambda tx: optix.hypergradient_descent(
        optix.chain(tx, optix.scale(-1.0)), learning_rate=1.0, hyper_lr=1e-4
    ),
}
WRAPPER_IDS = list(WRAPPERS)


# Gradients with respect to the learning rate (tests/test_hyperparams_gradients.py): every case
# is differentiated at its own `kwargs["learning_rate"]` unless listed here, with the learning
# rate it is checked at instead and why its own does not suit. No case is left out.
HYPERGRADIENT_LR: dict[str, tuple[float, str]] = {
    # L-BFGS reaches the minimum of the small problem within the 20 steps at 0.5: the loss no
    # longer depends on the step length (its derivative is rounding noise), nothing to check.
    "lbfgs": (0.05, "converged at 0.5: the derivative is 0 up to rounding"),
    # DoG's second step moves by learning_rate * r_eps * |g| / sqrt(|g|^2 + eps), which at a
    # learning rate of exactly 1 ties r_eps in max(r_eps, |x_1 - x_0|) to 4e-8: the loss has a
    # kink there (left and right derivatives differ), inside the finite-difference stencil.
    "dog": (0.5, "at 1 the second step's distance ties r_eps: a kink"),
}

# Cases whose derivative is not defined when a coordinate's gradient is exactly 0 at every step
# (a dead unit), checked on the problem without one, each with the reason. (The square roots of
# zero second moments are differentiable: optix takes sqrt's derivative at 0 as 0.)
HYPERGRADIENT_ZERO_GRADIENT_NAN: dict[str, str] = {
    # not a defect: the refresh of the eigenbasis is a QR decomposition of `statistic @ basis`,
    # singular when the statistic is (a zero gradient row), and QR has no derivative there
    "soap": "QR of a rank-deficient statistic times the basis: not differentiable there",
    # the eigenbasis of a statistic with a repeated (zero) eigenvalue is not unique, and eigh's
    # derivative divides by the gap between eigenvalues
    "shampoo_eigenvalue_corrected": "eigenvectors of a repeated eigenvalue: no derivative",
}
