"""The reference registry: how every optimizer's numbers are checked, in one place.

Each ``Reference`` says which optix optimizer it checks (``optimizer``: the public alias, or
``None`` for a building block), against what (``against``: torch.optim, optax, optax.contrib or a
NumPy transcription in ``tests/transcriptions.py``), with what settings (the two factories), by
which teacher-forced float64 loop of ``tests/reference.py`` (``runner``, with its ``options``:
seed, tolerance, streams) and over how many steps (``steps``, at least 100).
``tests/test_references.py`` runs every entry, and fails when a public optimizer of ``optix`` has
no entry (``public_optimizers``; the functions that are not optimizers are listed in
``NOT_OPTIMIZERS``, each with the reason).

Tolerances: ``tests.reference.RTOL`` / ``ATOL_REL`` (``rtol = 1e-10``, ``atol = 1e-13 *
max|update|``) unless an entry says otherwise; torch.optim: ``rtol = 1e-9, atol = 1e-12`` (torch's
update is read back as ``new - old``); Shampoo and SOAP ``rtol = 1e-9, atol = 1e-11 *
max|update|`` (eigendecompositions by different LAPACK drivers); ``optax.adafactor`` ``rtol =
2e-6`` and ``optax.contrib.madgrad`` ``rtol = 1e-4`` (both round a schedule to float32; their
float64 conventions are checked at the default tolerance against rebuilt chains and
transcriptions); PSGD Kron ``rtol = 1e-8, atol = 1e-10 * max|update|`` (inverse of a triangular
factor by LAPACK against a triangular solve; observed 2e-14). The reasons are in the docstrings of the behaviour tests of each optimizer.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.contrib
import torch

import optix
from tests.reference import N_STEPS
from tests.reference import matrix_streams
from tests.reference import params_stream
from tests.reference import polyak_loss_stream
from tests.reference import reference_streams
from tests.reference import run_against_torch
from tests.reference import run_eager
from tests.reference import run_lbfgs_quadratic
from tests.reference import run_noise_transcription
from tests.reference import run_on_shapes
from tests.reference import run_teacher_forced
from tests.reference import run_with_extra
from tests.reference import run_with_value
from tests.transcriptions import NumpyDadaptAdam
from tests.transcriptions import NumpyMadgrad
from tests.transcriptions import NumpyProdigy
from tests.transcriptions import NumpyPsgdKron
from tests.transcriptions import Sm3Paper
from tests.transcriptions import adan_paper
from tests.transcriptions import cosine_schedule
from tests.transcriptions import decay_mask
from tests.transcriptions import masked_paper_adan
from tests.transcriptions import numpy_cosine_schedule
from tests.transcriptions import numpy_eigenvalue_corrected_shampoo
from tests.transcriptions import numpy_muon
from tests.transcriptions import numpy_normuon
from tests.transcriptions import numpy_shampoo
from tests.transcriptions import numpy_soap
from tests.transcriptions import optax_adafactor_f64
from tests.transcriptions import optax_muon
from tests.transcriptions import paper_alpha_schedule
from tests.transcriptions import paper_b3_schedule
from tests.transcriptions import separable_objective
from tests.transcriptions import squares_plus_params

optim = torch.optim

# ---------------------------------------------------------------------------------------------
# Which public functions are optimizers
# ---------------------------------------------------------------------------------------------

# Public functions that return a GradientTransformation but are not optimizer aliases, besides
# two rules: ``scale_by_*`` transforms are the pieces the aliases chain (an alias's reference
# checks its ``scale_by_*``), and ``optix.wrappers`` wrap another optimizer
# (tests/test_wrapper_contract.py runs each around every case).
NOT_OPTIMIZERS = {
    "identity": "core: no update rule",
    "set_to_zero": "core: no update rule",
    "stateless": "core: lifts a user function",
    "chain": "core: composes transforms",
    "named_chain": "core: composes transforms",
    "clip": "building block (gradient clipping); checked against optax.clip here",
    "clip_by_global_norm": "building block (gradient clipping); checked against optax here",
    "clip_by_block_rms": "building block (gradient clipping); tests/test_blockclip.py",
    "adaptive_grad_clip": "building block (gradient clipping); tests/test_blockclip.py",
    "zclip": "building block (gradient clipping); a NumPy transcription in tests/test_spikes.py",
    "scale": "building block (a constant factor); checked against optax.scale here",
    "scale_lr": "building block (the sign and the learning rate of every alias)",
    "add_decayed_weights": "building block (weight decay); checked against optax here",
    "add_noise": "building block (gradient noise); random, tests of noisy_sgd",
    "centralize": "building block (normalisation); checked against optax here",
    "normalize_by_update_norm": "building block (normalisation); checked against optax here",
    "ema": "building block (a moving average); checked against optax.ema here",
    "zero_nans": "building block (sanitises gradients); checked against optax here",
    "adafactor_momentum": "building block of adafactor (its momentum option)",
    "hutchinson_hessian_diag": "building block of sophia (its Hessian estimator)",
    "schedule_free": "wraps a base optimizer; checked as schedule_free_sgd / _adamw",
}


def _returns_transform(fn: Callable) -> bool:
    annotation = inspect.signature(fn).return_annotation
    return annotation in ("GradientTransformation", optix.GradientTransformation)


def public_optimizers() -> list[str]:
    """Every public optix function returning a GradientTransformation that is an optimizer."""
    names = []
    for name in optix.__all__:
        fn = getattr(optix, name)
        if not inspect.isfunction(fn) or not _returns_transform(fn):
            continue
        if name.startswith("scale_by_") or fn.__module__.startswith("optix.wrappers"):
            continue
        if name not in NOT_OPTIMIZERS:
            names.append(name)
    return sorted(names)


# ---------------------------------------------------------------------------------------------
# The registry entry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    id: str  # "<source>:<name>", the test id
    optimizer: str | None  # the public alias it checks; None for a building block
    against: str  # the reference implementation
    ours: Callable[[], Any]  # optix, built inside the test (x64 on)
    theirs: Callable[[], Any]  # the reference, built inside the test (for torch: a factory)
    runner: Callable[..., Any]  # a teacher-forced loop of tests/reference.py
    options: dict[str, Any] = field(default_factory=dict)  # seed, tolerances, streams
    fixtures: tuple[str, ...] = ()  # pytest fixtures it needs besides ``x64``
    steps: int = N_STEPS
    x64: bool = True  # float64 (every entry but noisy_sgd's float32 noise draws)

    def run(self) -> None:
        self.runner(self.ours(), self.theirs(), self.id, steps=self.steps, **self.options)


def _alias_of(name: str, aliases: list[str]) -> str | None:
    """The longest public alias that ``name`` starts with (then ends or goes on with -, _ or a
    space): entries are named after what they check."""
    found = [a for a in aliases if re.match(re.escape(a) + r"($|[-_ ])", name)]
    return max(found, key=len) if found else None


def _entries(
    source: str,
    against: str,
    table: dict[str, tuple[Callable, Callable]],
    runner: Callable = run_teacher_forced,
    *,
    fixtures: tuple[str, ...] = (),
    seed_by_name: bool = False,
    **options: Any,
) -> list[Reference]:
    aliases = public_optimizers()
    out = []
    for name, (ours, theirs) in table.items():
        opts = {"seed": len(name), **options} if seed_by_name else dict(options)
        out.append(
            Reference(
                f"{source}:{name}",
                _alias_of(name, aliases),
                against,
                ours,
                theirs,
                runner,
                opts,
                fixtures,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# torch.optim (runner: tests.reference.run_against_torch; torch's default dtype float64)
# ---------------------------------------------------------------------------------------------


# (id, optix factory, torch factory). Factories are called inside the test, with x64 on.
_TORCH = [
    # --- SGD ---
    ("sgd", lambda: optix.sgd(0.05), lambda ps: optim.SGD(ps, lr=0.05)),
    (
        "sgd-momentum",
        lambda: optix.sgd(0.05, momentum=0.9),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
    ),
    (
        "sgd-nesterov",
        lambda: optix.sgd(0.05, momentum=0.9, nesterov=True),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    ),
    (
        "sgd-momentum-dampening",
        lambda: optix.sgd(0.05, momentum=0.9, dampening=0.5),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.5),
    ),
    (
        "sgd-weight-decay",
        lambda: optix.sgd(0.05, weight_decay=0.01),
        lambda ps: optim.SGD(ps, lr=0.05, weight_decay=0.01),
    ),
    (
        "sgd-momentum-weight-decay",
        lambda: optix.sgd(0.05, momentum=0.8, weight_decay=0.01),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, weight_decay=0.01),
    ),
    (
        "sgd-nesterov-weight-decay",
        lambda: optix.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    # --- RMSprop (optix's default decay is 0.9, torch's alpha 0.99: always passed explicitly) ---
    (
        "rmsprop",
        lambda: optix.rmsprop(1e-2, decay=0.99),
        lambda ps: optim.RMSprop(ps, lr=1e-2, alpha=0.99),
    ),
    (
        "rmsprop-decay0.9-eps1e-6",
        lambda: optix.rmsprop(1e-2, decay=0.9, eps=1e-6),
        lambda ps: optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-6),
    ),
    (
        "rmsprop-centered",
        lambda: optix.rmsprop(1e-2, decay=0.99, centered=True),
        lambda ps: optim.RMSprop(ps, lr=1e-2, alpha=0.99, centered=True),
    ),
    (
        "rmsprop-momentum",
        lambda: optix.rmsprop(1e-2, decay=0.99, momentum=0.9),
        lambda ps: optim.RMSprop(ps, lr=1e-2, alpha=0.99, momentum=0.9),
    ),
    (
        "rmsprop-centered-momentum",
        lambda: optix.rmsprop(1e-2, decay=0.9, centered=True, momentum=0.8),
        lambda ps: optim.RMSprop(ps, lr=1e-2, alpha=0.9, centered=True, momentum=0.8),
    ),
    # --- Adagrad ---
    ("adagrad", lambda: optix.adagrad(0.1), lambda ps: optim.Adagrad(ps, lr=0.1)),
    (
        "adagrad-initial-accumulator",
        lambda: optix.adagrad(0.1, initial_accumulator_value=0.1),
        lambda ps: optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1),
    ),
    (
        "adagrad-eps1e-6",
        lambda: optix.adagrad(0.05, eps=1e-6),
        lambda ps: optim.Adagrad(ps, lr=0.05, eps=1e-6),
    ),
    # --- Adadelta ---
    ("adadelta-lr1", lambda: optix.adadelta(), lambda ps: optim.Adadelta(ps, lr=1.0)),
    (
        "adadelta-lr0.5-rho0.95",
        lambda: optix.adadelta(0.5, rho=0.95, eps=1e-5),
        lambda ps: optim.Adadelta(ps, lr=0.5, rho=0.95, eps=1e-5),
    ),
    # --- Adam family ---
    ("adam", lambda: optix.adam(1e-3), lambda ps: optim.Adam(ps, lr=1e-3)),
    (
        "adam-b1_0.8-b2_0.99-eps1e-6",
        lambda: optix.adam(1e-2, b1=0.8, b2=0.99, eps=1e-6),
        lambda ps: optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
    ),
    (
        "adam-amsgrad",
        lambda: optix.adam(1e-2, amsgrad=True),
        lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True),
    ),
    (
        "adam-l2",  # torch's coupled Adam(weight_decay=...) is add_decayed_weights before adam
        lambda: optix.chain(optix.add_decayed_weights(0.05), optix.adam(1e-2)),
        lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.05),
    ),
    (
        "adamw",
        lambda: optix.adamw(1e-2, weight_decay=0.1),
        lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    ),
    (
        "adamw-amsgrad-b1_0.8",
        lambda: optix.adamw(1e-2, b1=0.8, weight_decay=0.1, amsgrad=True),
        lambda ps: optim.AdamW(ps, lr=1e-2, betas=(0.8, 0.999), weight_decay=0.1, amsgrad=True),
    ),
    ("adamax", lambda: optix.adamax(2e-3), lambda ps: optim.Adamax(ps, lr=2e-3)),
    (
        "adamax-b1_0.8-eps1e-6",
        lambda: optix.adamax(1e-2, b1=0.8, b2=0.99, eps=1e-6),
        lambda ps: optim.Adamax(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
    ),
    ("nadam", lambda: optix.nadam(2e-3), lambda ps: optim.NAdam(ps, lr=2e-3)),
    (
        "nadam-b1_0.8-psi1e-2-eps1e-6",
        lambda: optix.nadam(1e-2, b1=0.8, b2=0.99, eps=1e-6, momentum_decay=1e-2),
        lambda ps: optim.NAdam(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, momentum_decay=1e-2),
    ),
    ("radam", lambda: optix.radam(1e-3), lambda ps: optim.RAdam(ps, lr=1e-3)),
    (
        "radam-b2_0.99",
        lambda: optix.radam(1e-2, b2=0.99),
        lambda ps: optim.RAdam(ps, lr=1e-2, betas=(0.9, 0.99)),
    ),
    (
        "radam-b1_0.8-eps1e-6",
        lambda: optix.radam(1e-2, b1=0.8, eps=1e-6),
        lambda ps: optim.RAdam(ps, lr=1e-2, betas=(0.8, 0.999), eps=1e-6),
    ),
]


def _exponential(step: int) -> float:
    """optix.schedules.exponential_decay(1e-2, 10, 0.5) as a factor of the base lr 1e-2."""
    return 0.5 ** (step / 10)


def _cosine(step: int) -> float:
    """optix.schedules.cosine_decay(1e-2, 50, alpha=0.1) as a factor of the base lr 1e-2."""
    s = min(step, 50)
    return 0.9 * 0.5 * (1 + math.cos(math.pi * s / 50)) + 0.1


# optix's schedule is evaluated at the 0-based update count k. torch's LambdaLR sets
# lr = base_lr * factor(last_epoch), with last_epoch = 0 at construction and + 1 per
# scheduler.step() (called after each optimizer step), so torch's k-th step also uses factor(k).
_TORCH_SCHEDULES = [
    (
        "adam-exponential-decay",
        lambda: optix.adam(optix.schedules.exponential_decay(1e-2, 10, 0.5)),
        lambda ps: optim.Adam(ps, lr=1e-2),
        _exponential,
    ),
    (
        "adamw-cosine-decay",  # the decoupled decay follows the scheduled lr in both
        lambda: optix.adamw(optix.schedules.cosine_decay(1e-2, 50, alpha=0.1), weight_decay=0.1),
        lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
        _cosine,
    ),
    (
        "sgd-momentum-cosine-decay",
        lambda: optix.sgd(optix.schedules.cosine_decay(1e-2, 50, alpha=0.1), momentum=0.9),
        lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.9),
        _cosine,
    ),
]


# nadamw's default against torch.optim.NAdam(decoupled_weight_decay=True), teacher-forced params.
_TORCH_NADAMW = {
    "nadamw": (
        lambda: optix.nadamw(2e-3, weight_decay=1e-2),
        lambda ps: optim.NAdam(ps, lr=2e-3, decoupled_weight_decay=True, weight_decay=1e-2),
    ),
    "nadamw-options": (
        lambda: optix.nadamw(
            2e-3, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1, momentum_decay=1e-2
        ),
        lambda ps: optim.NAdam(
            ps,
            lr=2e-3,
            decoupled_weight_decay=True,
            betas=(0.8, 0.99),
            eps=1e-6,
            weight_decay=0.1,
            momentum_decay=1e-2,
        ),
    ),
}

# Rprop: torch.optim.Rprop, from the reference streams of seed 3.
_TORCH_RPROP = {
    "rprop": (lambda: optix.rprop(0.01, 0.5, 1.2, 1e-6, 50.0), lambda ps: optim.Rprop(ps, lr=0.01)),
    "rprop-options": (
        lambda: optix.rprop(0.05, 0.3, 1.5, 1e-3, 0.2),
        lambda ps: optim.Rprop(ps, lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2)),
    ),
    # above max_step_size: torch clamps at the first step, as optix does
    "rprop-lr_above_max": (
        lambda: optix.rprop(80.0, 0.5, 1.2, 1e-6, 50.0),
        lambda ps: optim.Rprop(ps, lr=80.0),
    ),
}

# Muon: torch.optim.Muon on matrices, its bfloat16 Newton-Schulz made float64 (the fixture).
_TORCH_MUON = {
    "muon": (
        lambda: optix.muon(0.02, layout="out_in", weight_decay=0.1),
        lambda ps: optim.Muon(ps, lr=0.02, weight_decay=0.1),
    ),
    "muon-no-nesterov": (
        lambda: optix.muon(0.02, layout="out_in", nesterov=False),
        lambda ps: optim.Muon(ps, lr=0.02, nesterov=False, weight_decay=0.0),
    ),
    "muon-match-rms": (
        lambda: optix.muon(
            0.02, layout="out_in", scale_mode="match_rms_adamw", weight_decay=0.05, beta=0.9
        ),
        lambda ps: optim.Muon(
            ps, lr=0.02, adjust_lr_fn="match_rms_adamw", weight_decay=0.05, momentum=0.9
        ),
    ),
}


def _torch_entries(table, fixtures=("torch64",), **options) -> list[Reference]:
    """torch.optim entries: ``table`` is (name, optix factory, torch factory of the params)
    triples or a dict name -> (optix factory, torch factory)."""
    rows = table.items() if isinstance(table, dict) else [(n, (o, t)) for n, o, t in table]
    pairs = {name: (ours, (lambda t=theirs: t)) for name, (ours, theirs) in rows}
    return _entries("torch", "torch.optim", pairs, run_against_torch, fixtures=fixtures, **options)


# ---------------------------------------------------------------------------------------------
# optax and optax.contrib (runner: tests.reference.run_teacher_forced unless said)
# ---------------------------------------------------------------------------------------------


# The learning-rate schedule that scale_by_schedule is checked with: the same callable for both.
def _shared_schedule():
    return optix.schedules.join(
        [optix.schedules.linear(0.1, 1.0, 10), optix.schedules.exponential_decay(1.0, 15, 0.5)],
        [10],
    )


# name -> (optix factory, optax factory); both built inside the test, with x64 on.
_OPTAX_CORE = {
    "clip_by_global_norm": (
        lambda: optix.clip_by_global_norm(2.0),
        lambda: optax.clip_by_global_norm(2.0),
    ),
    "clip": (lambda: optix.clip(0.5), lambda: optax.clip(0.5)),
    "scale": (lambda: optix.scale(-0.3), lambda: optax.scale(-0.3)),
    "scale_by_schedule": (
        lambda: optix.scale_by_schedule(_shared_schedule()),
        lambda: optax.scale_by_schedule(_shared_schedule()),
    ),
    "add_decayed_weights": (
        lambda: optix.add_decayed_weights(0.05),
        lambda: optax.add_decayed_weights(0.05),
    ),
    "add_decayed_weights_mask_tree": (
        lambda: optix.add_decayed_weights(
            0.05, mask={"scalar": False, "vector": True, "matrix": True}
        ),
        lambda: optax.add_decayed_weights(
            0.05, mask={"scalar": False, "vector": True, "matrix": True}
        ),
    ),
    "add_decayed_weights_mask_fn": (
        lambda: optix.add_decayed_weights(0.05, mask=decay_mask),
        lambda: optax.add_decayed_weights(0.05, mask=decay_mask),
    ),
    "sgd": (lambda: optix.sgd(0.1), lambda: optax.sgd(0.1)),
    "sgd_schedule": (
        lambda: optix.sgd(optix.schedules.cosine_decay(0.2, 80, alpha=0.05)),
        lambda: optax.sgd(optax.cosine_decay_schedule(0.2, 80, alpha=0.05)),
    ),
    "adam": (lambda: optix.adam(1e-2), lambda: optax.adam(1e-2)),
    "adam_betas_eps": (
        lambda: optix.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6),
        lambda: optax.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6),
    ),
    "rmsprop_eps_in_sqrt": (
        lambda: optix.rmsprop(1e-2, decay=0.9, eps=1e-8, eps_in_sqrt=True),
        lambda: optax.rmsprop(1e-2, decay=0.9, eps=1e-8),
    ),
    "rmsprop_centered_eps_in_sqrt": (
        lambda: optix.rmsprop(1e-2, decay=0.95, eps=1e-6, centered=True, eps_in_sqrt=True),
        lambda: optax.rmsprop(1e-2, decay=0.95, eps=1e-6, centered=True),
    ),
    # optax's adamax puts eps inside the max, ``max(|g| + eps, b2 * u)`` (optax/tree_utils
    # tree_update_infinity_moment), as torch does: that is optix's default ``eps_in_max=True``.
    "adamax": (lambda: optix.adamax(2e-3), lambda: optax.adamax(2e-3)),
    "adamax_betas_eps": (
        lambda: optix.adamax(1e-2, b1=0.85, b2=0.99, eps=1e-3),
        lambda: optax.adamax(1e-2, b1=0.85, b2=0.99, eps=1e-3),
    ),
}


def _every_third_skipped(step):
    return step % 3 != 0


# name -> (optix factory, optax factory); both built inside the test, with x64 on.
_OPTAX_MORE = {
    # optax's nadamw: Adam with a Nesterov look-ahead, constant momentum (momentum_schedule=False)
    "nadamw_optax_rule": (
        lambda: optix.nadamw(3e-3, weight_decay=0.05, momentum_schedule=False),
        lambda: optax.nadamw(3e-3, weight_decay=0.05),
    ),
    "nadamw_optax_rule_options": (
        lambda: optix.nadamw(
            1e-2,
            b1=0.8,
            b2=0.99,
            eps=1e-6,
            weight_decay=1e-3,
            mask=decay_mask,
            momentum_schedule=False,
            eps_root=1e-10,
        ),
        lambda: optax.nadamw(
            1e-2, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10, weight_decay=1e-3, mask=decay_mask
        ),
    ),
    "scale_by_nesterov_adam": (
        lambda: optix.scale_by_nesterov_adam(b1=0.85, b2=0.95),
        lambda: optax.scale_by_adam(b1=0.85, b2=0.95, nesterov=True),
    ),
    "adamaxw": (
        lambda: optix.adamaxw(2e-3, weight_decay=1e-4),
        lambda: optax.adamaxw(2e-3, weight_decay=1e-4),
    ),
    "adamaxw_options": (
        lambda: optix.adamaxw(1e-2, b1=0.85, b2=0.99, eps=1e-3, weight_decay=0.1, mask=decay_mask),
        lambda: optax.adamaxw(1e-2, b1=0.85, b2=0.99, eps=1e-3, weight_decay=0.1, mask=decay_mask),
    ),
    "optimistic_gradient_descent": (
        lambda: optix.optimistic_gradient_descent(0.05),
        lambda: optax.optimistic_gradient_descent(0.05),
    ),
    "optimistic_gradient_descent_alpha_beta": (
        lambda: optix.optimistic_gradient_descent(0.05, alpha=0.7, beta=1.3),
        lambda: optax.optimistic_gradient_descent(0.05, alpha=0.7, beta=1.3),
    ),
    "optimistic_adam": (
        lambda: optix.optimistic_adam(1e-2, alpha=0.5, beta=0.8),
        lambda: optax.optimistic_adam_v2(1e-2, alpha=0.5, beta=0.8),
    ),
    "optimistic_adam_plain_adam": (
        lambda: optix.optimistic_adam(1e-2, nesterov=False, b2=0.99, eps_root=1e-12),
        lambda: optax.optimistic_adam_v2(1e-2, nesterov=False, b2=0.99, eps_root=1e-12),
    ),
    "scale_by_stddev_eps_in_sqrt": (
        lambda: optix.scale_by_stddev(0.9, 1e-8, eps_in_sqrt=True),
        lambda: optax.scale_by_stddev(0.9, 1e-8),
    ),
    "scale_by_stddev_eps_outside": (
        lambda: optix.scale_by_stddev(0.95, 1e-6),
        lambda: optax.scale_by_stddev(0.95, 1e-6, eps_in_sqrt=False),
    ),
    "scale_by_stddev_bias_correction_eps_in_sqrt": (
        lambda: optix.scale_by_stddev(0.9, 1e-6, eps_in_sqrt=True, bias_correction=True),
        lambda: optax.scale_by_stddev(0.9, 1e-6, bias_correction=True),
    ),
    # A one-sample variance is 0, so the first bias-corrected step divides by eps alone and
    # magnifies rounding; a positive initial_scale keeps that variance positive.
    "scale_by_stddev_bias_correction_eps_outside": (
        lambda: optix.scale_by_stddev(
            0.9, 1e-6, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True
        ),
        lambda: optax.scale_by_stddev(
            0.9, 1e-6, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True
        ),
    ),
    "centralize": (optix.centralize, optax.centralize),
    "normalize_by_update_norm": (
        lambda: optix.normalize_by_update_norm(0.7, eps=1e-6),
        lambda: optax.normalize_by_update_norm(0.7, eps=1e-6),
    ),
    "scale_by_param_block_norm": (
        lambda: optix.scale_by_param_block_norm(0.5),
        lambda: optax.scale_by_param_block_norm(0.5),
    ),
    "scale_by_param_block_rms": (
        lambda: optix.scale_by_param_block_rms(0.9),
        lambda: optax.scale_by_param_block_rms(0.9),
    ),
    "ema_debiased": (lambda: optix.ema(0.9), lambda: optax.ema(0.9)),
    "ema_biased": (lambda: optix.ema(0.8, debias=False), lambda: optax.ema(0.8, debias=False)),
    "zero_nans": (optix.zero_nans, optax.zero_nans),
    "conditionally_transform": (
        lambda: optix.conditionally_transform(optix.scale_by_adam(), _every_third_skipped),
        lambda: optax.conditionally_transform(optax.scale_by_adam(), _every_third_skipped),
    ),
    "conditionally_mask": (
        lambda: optix.conditionally_mask(optix.adam(1e-2), _every_third_skipped),
        lambda: optax.conditionally_mask(optax.adam(1e-2), _every_third_skipped),
    ),
    "sgd_momentum_accumulator_dtype": (
        lambda: optix.sgd(0.05, momentum=0.9, accumulator_dtype=jnp.float64),
        lambda: optax.sgd(0.05, momentum=0.9, accumulator_dtype=jnp.float64),
    ),
}


# name -> (optix factory, optax factory); built inside the test, with x64 on.
_CONTRIB = {
    "cocob": (
        lambda: optix.cocob(weight_decay=0.01),
        lambda: optax.contrib.cocob(weight_decay=0.01),
    ),
    "cocob_alpha": (
        lambda: optix.cocob(alpha=10.0, eps=1e-3),
        lambda: optax.contrib.cocob(alpha=10.0, eps=1e-3),
    ),
    "dog_heuristic": (
        lambda: optix.dog(weight_decay=0.01),
        lambda: optax.contrib.dog(weight_decay=0.01),
    ),
    "dog_distance_schedule": (
        lambda: optix.dog(cosine_schedule, init_step=("distance", 0.3)),
        lambda: optax.contrib.dog(cosine_schedule, init_step=("distance", 0.3)),
    ),
    "dog_learning_rate": (
        lambda: optix.dog(init_step=("learning_rate", 0.02), eps=1e-6),
        lambda: optax.contrib.dog(init_step=("learning_rate", 0.02), eps=1e-6),
    ),
    "dowg": (
        lambda: optix.dowg(weight_decay=0.01),
        lambda: optax.contrib.dowg(weight_decay=0.01),
    ),
    "dowg_init": (
        lambda: optix.dowg(0.5, init_estim_sq_dist=0.2, eps=1e-6),
        lambda: optax.contrib.dowg(0.5, init_estim_sq_dist=0.2, eps=1e-6),
    ),
    "simplified_ademamix": (
        lambda: optix.simplified_ademamix(1e-3, alpha=2.0, eps_root=1e-8, weight_decay=0.01),
        lambda: optax.contrib.simplified_ademamix(
            1e-3, alpha=2.0, eps_root=1e-8, weight_decay=0.01
        ),
    ),
    "simplified_ademamix_schedule": (
        lambda: optix.simplified_ademamix(cosine_schedule, b1=0.9, b2=0.99, alpha=cosine_schedule),
        lambda: optax.contrib.simplified_ademamix(
            cosine_schedule, b1=0.9, b2=0.99, alpha=cosine_schedule
        ),
    ),
    "acprop": (
        lambda: optix.acprop(1e-2, weight_decay=0.01),
        lambda: optax.contrib.acprop(1e-2, weight_decay=0.01),
    ),
    "acprop_eps": (
        lambda: optix.acprop(cosine_schedule, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
        lambda: optax.contrib.acprop(cosine_schedule, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
    ),
}


_MOMO = {
    "momo": (
        lambda: optix.momo(),
        lambda: optax.contrib.momo(),
    ),
    "momo_wd_bound": (
        lambda: optix.momo(0.5, beta=0.8, lower_bound=0.05, weight_decay=0.01),
        lambda: optax.contrib.momo(0.5, beta=0.8, lower_bound=0.05, weight_decay=0.01),
    ),
    "momo_adapt": (
        lambda: optix.momo(cosine_schedule, weight_decay=0.01, adapt_lower_bound=True),
        lambda: optax.contrib.momo(cosine_schedule, weight_decay=0.01, adapt_lower_bound=True),
    ),
    "momo_adam": (
        lambda: optix.momo_adam(),
        lambda: optax.contrib.momo_adam(),
    ),
    "momo_adam_wd_bound": (
        lambda: optix.momo_adam(0.1, b1=0.8, b2=0.99, lower_bound=0.05, weight_decay=0.01),
        lambda: optax.contrib.momo_adam(0.1, b1=0.8, b2=0.99, lower_bound=0.05, weight_decay=0.01),
    ),
    "momo_adam_adapt": (
        lambda: optix.momo_adam(
            cosine_schedule, eps=1e-6, weight_decay=0.01, adapt_lower_bound=True
        ),
        lambda: optax.contrib.momo_adam(
            cosine_schedule, eps=1e-6, weight_decay=0.01, adapt_lower_bound=True
        ),
    ),
}


_MECHANIZE = {
    "mechanize_adam": (
        lambda: optix.mechanize(optix.adam(1e-2)),
        lambda: optax.contrib.mechanize(optax.adam(1e-2)),
    ),
    "mechanize_sgd_options": (
        lambda: optix.mechanize(optix.sgd(0.1), weight_decay=0.1, s_init=1e-4, num_betas=3),
        lambda: optax.contrib.mechanize(optax.sgd(0.1), weight_decay=0.1, s_init=1e-4, num_betas=3),
    ),
}


_GALORE = {
    "galore": (
        lambda: optix.galore(
            1e-2, rank=2, update_proj_gap=5, weight_decay=0.01, svd_dtype=jnp.float32
        ),
        lambda: optax.contrib.galore(1e-2, rank=2, update_proj_gap=5, weight_decay=0.01),
    ),
    "galore_sgd_scale": (
        lambda: optix.galore(
            cosine_schedule,
            rank=3,
            update_proj_gap=7,
            scale=0.25,
            base_optimizer=optix.scale_by_momentum(0.9),
            svd_dtype=jnp.float32,
        ),
        lambda: optax.contrib.galore(
            cosine_schedule, rank=3, update_proj_gap=7, scale=0.25, base_optimizer=optax.trace(0.9)
        ),
    ),
}


_ADAM_VARIANTS_AND_SIGN = {
    "adabelief": (lambda: optix.adabelief(1e-2), lambda: optax.adabelief(1e-2)),
    "adabelief_betas_eps": (
        lambda: optix.adabelief(3e-3, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10),
        lambda: optax.adabelief(3e-3, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10),
    ),
    "adabelief_nesterov": (
        lambda: optix.adabelief(1e-2, nesterov=True),
        lambda: optax.adabelief(1e-2, nesterov=True),
    ),
    "yogi": (lambda: optix.yogi(1e-2), lambda: optax.yogi(1e-2)),
    "yogi_options": (
        lambda: optix.yogi(
            3e-3, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, initial_accumulator_value=0.1
        ),
        lambda: optax.chain(
            optax.scale_by_yogi(
                b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, initial_accumulator_value=0.1
            ),
            optax.scale(-3e-3),
        ),
    ),
    "adopt": (lambda: optix.adopt(1e-3), lambda: optax.contrib.adopt(1e-3)),
    "adopt_nesterov_betas": (
        lambda: optix.adopt(1e-3, b1=0.8, b2=0.99, eps=1e-4, nesterov=True),
        lambda: optax.contrib.adopt(1e-3, b1=0.8, b2=0.99, eps=1e-4, nesterov=True),
    ),
    "adopt_no_clipping": (
        lambda: optix.adopt(1e-3, eps=1e-3, clip_value=None),
        lambda: optax.contrib.adopt(1e-3, eps=1e-3, use_clipping=False),
    ),
    "adopt_weight_decay": (
        lambda: optix.adopt(1e-3, weight_decay=0.1, mask=decay_mask),
        lambda: optax.chain(
            optax.contrib.scale_by_adopt(),
            optax.add_decayed_weights(0.1, decay_mask),
            optax.scale(-1e-3),
        ),
    ),
    "ademamix": (
        lambda: optix.ademamix(1e-3, weight_decay=0.1, mask=decay_mask),
        lambda: optax.contrib.ademamix(1e-3, weight_decay=0.1, mask=decay_mask),
    ),
    "ademamix_betas_eps_root": (
        lambda: optix.ademamix(2e-3, b1=0.8, b2=0.99, b3=0.999, alpha=8.0, eps_root=1e-8),
        lambda: optax.contrib.ademamix(2e-3, b1=0.8, b2=0.99, b3=0.999, alpha=8.0, eps_root=1e-8),
    ),
    # the paper's warmups (written above from the paper) against optix's warmup options
    "ademamix_warmups": (
        lambda: optix.ademamix(1e-3, b3=0.999, alpha_warmup_steps=60, b3_warmup_steps=80),
        lambda: optax.contrib.ademamix(
            1e-3,
            b3=paper_b3_schedule(0.9, 0.999, 80),
            alpha=paper_alpha_schedule(5.0, 60),
        ),
    ),
    "adan": (
        lambda: optix.adan(1e-2, weight_decay=0.02, mask=decay_mask),
        lambda: masked_paper_adan(),
    ),
    "adan_betas": (
        lambda: optix.adan(3e-3, b1=0.9, b2=0.8, b3=0.95, eps=1e-6, weight_decay=0.05),
        lambda: adan_paper(3e-3, 0.9, 0.8, 0.95, 1e-6, 0.05),
    ),
    # optax's difference weight (1 - b2) equals the paper's (b2) only at b2 = 0.5: there optax
    # checks everything else (bias corrections, eps and eps_root placement, d_1 = 0, the decay)
    "adan_b2_half_vs_optax": (
        lambda: optix.adan(1e-2, b2=0.5, eps_root=1e-8, weight_decay=0.02, mask=decay_mask),
        lambda: optax.adan(1e-2, b2=0.5, eps_root=1e-8, weight_decay=0.02, mask=decay_mask),
    ),
    "lion": (
        lambda: optix.lion(1e-3, weight_decay=0.1, mask=decay_mask),
        lambda: optax.lion(1e-3, weight_decay=0.1, mask=decay_mask),
    ),
    "lion_betas": (
        lambda: optix.lion(3e-4, b1=0.95, b2=0.98),
        lambda: optax.lion(3e-4, b1=0.95, b2=0.98),
    ),
    "sign_sgd": (lambda: optix.sign_sgd(0.1), lambda: optax.sign_sgd(0.1)),
    "signum": (lambda: optix.signum(0.05, beta=0.8), lambda: optax.signum(0.05, beta=0.8)),
}


def _cosine_80():
    return optix.schedules.cosine_decay(0.05, 80, alpha=0.1)


def _optax_cosine_80():
    return optax.cosine_decay_schedule(0.05, 80, alpha=0.1)


_LARS_OPTIONS = dict(
    weight_decay=1e-3,
    weight_decay_mask=decay_mask,
    trust_coefficient=0.02,
    eps=1e-3,
    trust_ratio_mask=decay_mask,
    momentum=0.8,
    nesterov=True,
)


_LAYERWISE = {
    "lamb": (lambda: optix.lamb(1e-2), lambda: optax.lamb(1e-2)),
    "lamb_wd_eps_root": (
        lambda: optix.lamb(3e-3, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, weight_decay=0.05),
        lambda: optax.lamb(3e-3, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, weight_decay=0.05),
    ),
    "lamb_mask_schedule": (
        lambda: optix.lamb(_cosine_80(), weight_decay=0.1, mask=decay_mask),
        lambda: optax.lamb(_optax_cosine_80(), weight_decay=0.1, mask=decay_mask),
    ),
    "lars": (lambda: optix.lars(0.1), lambda: optax.lars(0.1)),
    "lars_all_options": (
        lambda: optix.lars(0.2, **_LARS_OPTIONS),
        lambda: optax.lars(0.2, **_LARS_OPTIONS),
    ),
    # The momentum accumulates lr-scaled steps (paper, optax), so schedules agree too.
    "lars_schedule": (
        lambda: optix.lars(_cosine_80(), weight_decay=1e-3, trust_coefficient=0.05),
        lambda: optax.lars(_optax_cosine_80(), weight_decay=1e-3, trust_coefficient=0.05),
    ),
    "novograd": (lambda: optix.novograd(1e-2), lambda: optax.novograd(1e-2)),
    "novograd_options": (
        lambda: optix.novograd(
            _cosine_80(), b1=0.8, b2=0.5, eps=1e-4, eps_root=1e-6, weight_decay=0.01
        ),
        lambda: optax.novograd(
            _optax_cosine_80(), b1=0.8, b2=0.5, eps=1e-4, eps_root=1e-6, weight_decay=0.01
        ),
    ),
    "fromage": (lambda: optix.fromage(1e-2), lambda: optax.fromage(1e-2)),
    "fromage_schedule_min_norm": (
        lambda: optix.fromage(_cosine_80(), min_norm=0.5),
        lambda: optax.fromage(_optax_cosine_80(), min_norm=0.5),
    ),
    "scale_by_trust_ratio_options": (
        lambda: optix.scale_by_trust_ratio(min_norm=0.3, trust_coefficient=0.01, eps=1e-2),
        lambda: optax.scale_by_trust_ratio(min_norm=0.3, trust_coefficient=0.01, eps=1e-2),
    ),
}


_ADAFACTOR = {
    "default_unfactored": (lambda: optix.adafactor(1e-2), lambda: optax_adafactor_f64(1e-2)),
    "factored_matrix": (
        lambda: optix.adafactor(1e-2, min_dim_size_to_factor=3),
        lambda: optax_adafactor_f64(1e-2, 3),
    ),
    "options": (
        lambda: optix.adafactor(
            0.05,
            min_dim_size_to_factor=3,
            decay_rate=0.6,
            decay_offset=-4,
            clipping_threshold=0.5,
            eps=1e-20,
        ),
        lambda: optax_adafactor_f64(0.05, 3, decay_rate=0.6, offset=-4, clip=0.5, eps=1e-20),
    ),
    "no_clip_no_scale_not_factored": (
        lambda: optix.adafactor(
            0.05,
            min_dim_size_to_factor=3,
            clipping_threshold=None,
            multiply_by_parameter_scale=False,
            factored=False,
        ),
        lambda: optax_adafactor_f64(0.05, 3, clip=None, mbps=False, factored=False),
    ),
    # optix multiplies weight_decay_rate by the learning rate (documented); optax does not:
    # optix's rate lambda equals optax's rate divided by the (constant) learning rate.
    "momentum_weight_decay": (
        lambda: optix.adafactor(
            1e-2, min_dim_size_to_factor=3, momentum=0.9, weight_decay_rate=0.5
        ),
        lambda: optax_adafactor_f64(1e-2, 3, momentum=0.9, wd=0.5 * 1e-2),
    ),
}


def _lr_schedule(count):
    return 1.0 - 0.5 * jnp.minimum(count, 100).astype(float) / 100


_SCHEDULE_FREE = {
    "sgd": (
        lambda: optix.schedule_free_sgd(0.3, b1=0.5, weight_decay=0.01, weight_lr_power=1.0),
        lambda: optax.contrib.schedule_free_sgd(
            0.3, b1=0.5, weight_decay=0.01, weight_lr_power=1.0
        ),
    ),
    "adamw": (
        lambda: optix.schedule_free_adamw(0.01, weight_decay=0.01),
        lambda: optax.contrib.schedule_free_adamw(0.01, weight_decay=0.01),
    ),
    "adamw_b": (
        lambda: optix.schedule_free_adamw(0.1, b1=0.95, b2=0.99, eps=1e-3),
        lambda: optax.contrib.schedule_free_adamw(0.1, b1=0.95, b2=0.99, eps=1e-3),
    ),
}


_PARAMETER_FREE = {
    "prodigy": (lambda: optix.prodigy(), lambda: optax.contrib.prodigy()),
    "prodigy_wd_schedule": (
        lambda: optix.prodigy(_lr_schedule, weight_decay=0.05),
        lambda: optax.contrib.prodigy(_lr_schedule, weight_decay=0.05),
    ),
    "prodigy_safeguard_beta3": (
        lambda: optix.prodigy(b1=0.8, beta3=0.9, estim_lr_coef=2.0, safeguard_warmup=True),
        lambda: optax.contrib.prodigy(
            betas=(0.8, 0.999), beta3=0.9, estim_lr_coef=2.0, safeguard_warmup=True
        ),
    ),
    "dadapt_adamw_wd_schedule": (
        lambda: optix.dadapt_adamw(_lr_schedule, b2=0.99, weight_decay=0.05, estim_lr0=1e-3),
        lambda: optax.contrib.dadapt_adamw(
            _lr_schedule, betas=(0.9, 0.99), weight_decay=0.05, estim_lr0=1e-3
        ),
    ),
}


def _safe_normalize() -> optax.GradientTransformation:
    """optax.contrib.normalize with a zero gradient mapped to zero (optix's convention)."""

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        scale = jnp.where(norm > 0, 1 / jnp.where(norm > 0, norm, 1), 0)
        return jax.tree.map(lambda g: g * scale, updates), state

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


_SAM = {
    "paper_sam": (
        lambda: optix.sam(optix.sgd(0.1), rho=0.05),
        lambda: optax.contrib.sam(optax.sgd(0.1), optax.chain(_safe_normalize(), optax.sgd(0.05))),
    ),
    "adam_sync3_keep_state": (
        lambda: optix.sam(
            optix.adam(0.01), optix.scale_by_adam(), rho=0.02, sync_period=3, reset_state=False
        ),
        lambda: optax.contrib.sam(
            optax.adam(0.01),
            optax.chain(optax.scale_by_adam(), optax.sgd(0.02)),
            sync_period=3,
            reset_state=False,
        ),
    ),
    "momentum_sync4_reset": (
        lambda: optix.sam(
            optix.sgd(0.05, momentum=0.9), optix.scale_by_adam(), rho=0.1, sync_period=4
        ),
        lambda: optax.contrib.sam(
            optax.sgd(0.05, momentum=0.9),
            optax.chain(optax.scale_by_adam(), optax.sgd(0.1)),
            sync_period=4,
        ),
    ),
}


# Muon in optax's conventions (bias-corrected momentum, ``X / (||X|| + eps)``, (in, out) layout)
_OPTAX_MUON_CONVENTIONS = {"bias_correction": True, "eps_mode": "add", "eps": 1e-8}
_OPTAX_MUON = {
    "muon": (
        lambda: optix.muon(0.02, **_OPTAX_MUON_CONVENTIONS),
        lambda: optax_muon(0.02, eps=1e-8),
    ),
    "muon-no-nesterov-decay": (
        lambda: optix.muon(0.02, **_OPTAX_MUON_CONVENTIONS, nesterov=False, weight_decay=0.1),
        lambda: optax_muon(0.02, eps=1e-8, nesterov=False, weight_decay=0.1),
    ),
    "muon-rms": (
        lambda: optix.muon(0.02, **_OPTAX_MUON_CONVENTIONS, scale_mode="match_rms_adamw", beta=0.9),
        lambda: optax_muon(0.02, eps=1e-8, consistent_rms=0.2, beta=0.9),
    ),
}

# Sophia with a deterministic Hessian estimator shared by both sides; and with Hutchinson's
# estimator on a separable objective (diagonal Hessian: u * (H u) = diag(H) for every u).
_SOPHIA_KWARGS = dict(b1=0.9, b2=0.95, gamma=0.05, clip_threshold=0.5, update_interval=3)
_SOPHIA = {
    "sophia-shared-estimator": (
        lambda: optix.sophia(
            1e-2, weight_decay=0.01, hessian_diagonal_fn=squares_plus_params(), **_SOPHIA_KWARGS
        ),
        lambda: optax.contrib.sophia(
            1e-2, weight_decay=0.01, hessian_diagonal_fn=squares_plus_params(), **_SOPHIA_KWARGS
        ),
    ),
}

# L-BFGS (no line search) against optax.scale_by_lbfgs, on a quadratic's gradients.
_LBFGS = {
    "lbfgs-direction": (
        lambda: optix.scale_by_lbfgs(memory_size=5),
        lambda: optax.scale_by_lbfgs(memory_size=5),
    ),
}

# optax's adafactor itself (it rounds 1 - t^-0.8 to float32: rtol 2e-6, see test_adafactor.py)
_OPTAX_ADAFACTOR = {
    f"adafactor-optax-min_dim{min_dim}": (
        lambda min_dim=min_dim: optix.adafactor(1e-2, min_dim_size_to_factor=min_dim),
        lambda min_dim=min_dim: optax.adafactor(1e-2, min_dim_size_to_factor=min_dim),
    )
    for min_dim in (128, 3)
}

# ---------------------------------------------------------------------------------------------
# NumPy transcriptions (tests/transcriptions.py)
# ---------------------------------------------------------------------------------------------

EIG_RTOL, EIG_ATOL_REL = 1e-9, 1e-11  # Shampoo and SOAP; see the module docstring
SM3_SHAPES = {"scalar": (), "vector": (6,), "matrix": (3, 4), "cube": (2, 3, 4)}

_NUMPY_SM3 = {
    f"sm3-beta{beta}": (
        lambda beta=beta, eps=eps: optix.sm3(0.1, beta, eps=eps),
        lambda beta=beta, eps=eps: Sm3Paper(0.1, beta, eps),
    )
    for beta, eps in [(0.9, 1e-8), (0.0, 0.0)]
}

_NUMPY_PRODIGY = {
    f"prodigy-bc{bc}": (
        lambda bc=bc: optix.prodigy(weight_decay=0.02, bias_correction=bc),
        lambda bc=bc: NumpyProdigy(wd=0.02, bias_correction=bc),
    )
    for bc in (True, False)
}
_NUMPY_DADAPT = {
    f"dadapt_adamw-bc{bc}": (
        lambda bc=bc: optix.dadapt_adamw(weight_decay=0.02, bias_correction=bc),
        lambda bc=bc: NumpyDadaptAdam(wd=0.02, bias_correction=bc),
    )
    for bc in (True, False)
}
_NUMPY_MADGRAD = {
    "madgrad-momentum-decay": (
        lambda: optix.madgrad(0.05, momentum=0.9, weight_decay=0.01),
        lambda: NumpyMadgrad(0.05, momentum=0.9, weight_decay=0.01),
    ),
    "madgrad-no-momentum-eps": (
        lambda: optix.madgrad(0.05, momentum=0.0, eps=1e-4),
        lambda: NumpyMadgrad(0.05, momentum=0.0, eps=1e-4),
    ),
    "madgrad-schedule": (
        lambda: optix.madgrad(cosine_schedule, momentum=0.5),
        lambda: NumpyMadgrad(numpy_cosine_schedule, momentum=0.5),
    ),
}

_SHAMPOO = {
    "paper": ({}, {}),
    "freq5-blocks2-ema-graft-adam": (
        {"precondition_frequency": 5, "block_size": 2, "stat_decay": 0.95, "graft": "adam"},
        {"freq": 5, "block_size": 2, "stat_decay": 0.95, "graft": "adam"},
    ),
    "one-side-graft-adagrad": (
        {"max_precond_dim": 3, "precondition_frequency": 3, "graft": "adagrad", "eps": 1e-4},
        {"max_dim": 3, "freq": 3, "graft": "adagrad", "eps": 1e-4},
    ),
    "blocks3-maxdim2": (
        {"block_size": 3, "max_precond_dim": 2},
        {"block_size": 3, "max_dim": 2},
    ),
    "graft-sgd-freq2": (  # eps 1e-4: the step-1 statistics are rank-deficient (see above)
        {"precondition_frequency": 2, "graft": "sgd", "eps": 1e-4},
        {"freq": 2, "graft": "sgd", "eps": 1e-4},
    ),
    "graft-rmsprop-ema": (
        {"stat_decay": 0.9, "graft": "rmsprop", "graft_b2": 0.99},
        {"stat_decay": 0.9, "graft": "rmsprop", "graft_b2": 0.99},
    ),
}

# Eigenvalue-corrected Shampoo (``shampoo(preconditioner="eigenvalue_corrected")``), on shapes
# whose statistics are full rank from the first step (square blocks; a one-sided block whose
# preconditioned side is the short one): a null-space direction of a rank-deficient factor carries
# a round-off component of the gradient that ``X / (sqrt(D) + eps)`` scales up to a full step, so
# two LAPACK drivers disagree there (the reason SOAP's authors skip its first step). Even at full
# rank the first step is ill-conditioned: ``X = Q_L^T G Q_R`` is then G's singular values, its
# off-diagonal entries round-off (~1e-16 |G|), and ``X / (|X| + eps)`` scales them by |G| / eps;
# the two implementations differ there by up to 2e-9 of max|u| at eps = 1e-8 (1e-15 on later
# steps), hence ``rtol = 1e-7, atol = 1e-8 * max|u|`` for these entries.
ESHAMPOO_RTOL, ESHAMPOO_ATOL_REL = 1e-7, 1e-8
_ESHAMPOO = {
    "sum": ({}, {}),
    "soap-like-freq3": (
        {"stat_decay": 0.95, "eps": 1e-8, "precondition_frequency": 3},
        {"stat_decay": 0.95, "eps": 1e-8, "freq": 3},
    ),
    "blocks2-graft-adam": (
        {"block_size": 2, "stat_decay": 0.99, "graft": "adam", "precondition_frequency": 2},
        {"block_size": 2, "stat_decay": 0.99, "graft": "adam", "freq": 2},
    ),
}
ESHAMPOO_SHAPES = {"scalar": (), "vector": (6,), "square": (4, 4), "six": (6, 6)}
# ``max_precond_dim=3``: the (3, 5) leaf keeps its left factor only (full rank: 5 columns), the
# (4, 4) leaf none (the diagonal rule in the standard basis)
_ESHAMPOO_ONE_SIDE = {
    "one-side-graft-sgd": (
        {"max_precond_dim": 3, "graft": "sgd", "stat_decay": 0.9},
        {"max_dim": 3, "graft": "sgd", "stat_decay": 0.9},
    ),
}
ESHAMPOO_ONE_SIDE_SHAPES = {"vector": (6,), "square": (4, 4), "wide": (3, 5)}


_SOAP = {
    "authors-defaults": ({}, {}),
    "freq3-shampoo-beta": (
        {"precondition_frequency": 3, "shampoo_beta": 0.99, "b1": 0.9, "b2": 0.999},
        {"freq": 3, "sb": 0.99, "b1": 0.9, "b2": 0.999},
    ),
    "blocks2-freq4": (
        {"precondition_frequency": 4, "block_size": 2},
        {"freq": 4, "block_size": 2},
    ),
    "one-side": (
        {"precondition_frequency": 2, "max_precond_dim": 3},
        {"freq": 2, "max_dim": 3},
    ),
}


# PSGD Kron: psgd_jax's ``kron`` transcribed in NumPy (inverse by LAPACK instead of a triangular
# solve, so agreement is to rounding of the factors' updates: rtol 1e-8), fed the same probes.
_PSGD_KRON = {
    "defaults": ({}, {}),
    "decay-every3-diag-notrust": (
        dict(
            weight_decay=1e-2,
            mask=decay_mask,
            precond_update_every=3,
            max_size_triangular=3,
            trust_region_scale=None,
            precond_lr=0.3,
            init_scale=0.5,
            seed=4,
        ),
        dict(
            weight_decay=1e-2,
            mask=decay_mask,
            every=3,
            max_size=3,
            trust=None,
            precond_lr=0.3,
            init_scale=0.5,
            seed=4,
        ),
    ),
    "no-momentum-min-ndim3": (
        dict(b1=0.0, min_ndim_triangular=3, seed=1),
        dict(b1=0.0, min_ndim=3, seed=1),
    ),
}
_PSGD_RTOL, _PSGD_ATOL_REL = 1e-8, 1e-10


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_TORCH_RTOL, _TORCH_ATOL = 1e-9, 1e-12  # torch.optim; see the module docstring

REFERENCES: list[Reference] = [
    *_torch_entries(_TORCH, rtol=_TORCH_RTOL, atol=_TORCH_ATOL),
    *[
        Reference(
            f"torch:{name}",
            _alias_of(name, public_optimizers()),
            "torch.optim with LambdaLR",
            ours,
            lambda t=theirs: t,
            run_against_torch,
            {"rtol": _TORCH_RTOL, "atol": _TORCH_ATOL, "lr_lambda": factor},
            ("torch64",),
        )
        for name, ours, theirs, factor in _TORCH_SCHEDULES
    ],
    *_torch_entries(
        _TORCH_NADAMW,
        streams=lambda: reference_streams(4),
        forced_params=params_stream(4),
        rtol=_TORCH_RTOL,
        atol=_TORCH_ATOL,
    ),
    *_torch_entries(
        _TORCH_RPROP, fixtures=(), streams=lambda: reference_streams(3), rtol=1e-10, atol=1e-12
    ),
    *_torch_entries(
        _TORCH_MUON,
        fixtures=("torch_ns_float64",),
        streams=matrix_streams,
        rtol=1e-10,
        atol_rel=1e-13,
    ),
    *_entries("optax", "optax", _OPTAX_CORE),
    *_entries("optax", "optax", _OPTAX_MORE),
    *_entries(
        "optax",
        "optax.polyak_sgd (value=)",
        {
            f"polyak_sgd-{variant}-max_lr{max_lr}-eps{eps}": (
                lambda kw=kw: optix.polyak_sgd(**kw),
                lambda kw=kw: optax.polyak_sgd(**kw),
            )
            for variant in ("sps", "sps+")
            for max_lr, eps in [(1.0, 0.0), (0.05, 1e-3)]
            for kw in [{"max_learning_rate": max_lr, "f_min": 0.5, "eps": eps, "variant": variant}]
        },
        run_with_value,
        values=polyak_loss_stream,
    ),
    *[
        Reference(
            f"numpy:noisy_sgd-eta{eta}-gamma{gamma}-seed{seed}",
            "noisy_sgd",
            "its documented noise (optix.noise_key), float32",
            lambda eta=eta, gamma=gamma, seed=seed: optix.noisy_sgd(
                0.1, eta=eta, gamma=gamma, seed=seed
            ),
            lambda: None,
            run_noise_transcription,
            {"lr": 0.1, "eta": eta, "gamma": gamma, "seed": seed},
            x64=False,
        )
        for eta, gamma, seed in [(0.01, 0.55, 0), (0.3, 1.0, 1234)]
    ],
    *_entries("optax", "optax and optax.contrib", _ADAM_VARIANTS_AND_SIGN),
    *_entries("optax", "optax", _LAYERWISE),
    *_entries(
        "optax",
        "optax.adafactor's chain, float64 decay",
        {f"adafactor-{name}": pair for name, pair in _ADAFACTOR.items()},
    ),
    *_entries("optax", "optax.adafactor", _OPTAX_ADAFACTOR, rtol=2e-6),
    *_entries(
        "optax",
        "optax.sm3 (no scalar leaves)",
        {"sm3-momentum": (lambda: optix.sm3(0.3, 0.5), lambda: optax.sm3(0.3, 0.5))},
        run_on_shapes,
        seed=13,
        shapes={"vector": (6,), "matrix": (3, 4), "cube": (2, 3, 4)},
    ),
    *_entries("optax", "optax.contrib.muon + optax.adamw", _OPTAX_MUON),
    *_entries("optax", "optax.scale_by_lbfgs", _LBFGS, run_lbfgs_quadratic),
    *_entries("optax.contrib", "optax.contrib", _CONTRIB, seed_by_name=True),
    *_entries("optax.contrib", "optax.contrib", _MOMO, run_with_value, seed_by_name=True),
    *_entries("optax.contrib", "optax.contrib", _MECHANIZE, seed_by_name=True),
    *_entries("optax.contrib", "optax.contrib", _GALORE, seed_by_name=True),
    *_entries("optax.contrib", "optax.contrib", _SOPHIA, run_with_extra, seed=8),
    *_entries(
        "optax.contrib",
        "optax.contrib.sophia, Hutchinson",
        {
            "sophia-hutchinson": (
                lambda: optix.sophia(
                    cosine_schedule, gamma=0.05, update_interval=4, clip_threshold=None
                ),
                lambda: optax.contrib.sophia(
                    cosine_schedule, gamma=0.05, update_interval=4, clip_threshold=None
                ),
            )
        },
        run_with_extra,
        seed=9,
        obj_fn=separable_objective,
    ),
    *_entries(
        "optax.contrib",
        "optax.contrib.madgrad (float32 lambda_k)",
        {
            "madgrad": (
                lambda: optix.madgrad(0.05, momentum=0.9, weight_decay=0.01),
                lambda: optax.contrib.madgrad(0.05, momentum=0.9, weight_decay=0.01),
            )
        },
        seed=4,
        rtol=1e-4,
        atol_rel=1e-5,
    ),
    *_entries(
        "optax.contrib",
        "optax.contrib",
        {f"schedule_free_{name}": pair for name, pair in _SCHEDULE_FREE.items()},
        seed=3,
    ),
    *_entries("optax.contrib", "optax.contrib", _PARAMETER_FREE, seed=4),
    *_entries(
        "optax.contrib",
        "optax.contrib.sam",
        {f"sam-{name}": pair for name, pair in _SAM.items()},
        seed=8,
    ),
    *_entries(
        "numpy",
        "SM3-II (Anil et al. 2019)",
        _NUMPY_SM3,
        run_on_shapes,
        seed=11,
        shapes=SM3_SHAPES,
        jit_theirs=False,
    ),
    *_entries("numpy", "Prodigy, Algorithm 4", _NUMPY_PRODIGY, run_eager, seed=6),
    *_entries("numpy", "D-Adapt Adam, Algorithm 5", _NUMPY_DADAPT, run_eager, seed=7),
    *_entries("numpy", "MADGRAD, the authors' code", _NUMPY_MADGRAD, run_eager, seed=3),
    *_entries(
        "numpy",
        "Shampoo, Algorithms 1-2 (Gupta et al. 2018)",
        {
            f"shampoo-{name}": (
                lambda kw=ours_kw: optix.shampoo(0.1, **kw),
                lambda kw=ref_kw: numpy_shampoo(0.1, **kw),
            )
            for name, (ours_kw, ref_kw) in _SHAMPOO.items()
        },
        fixtures=("x64_callbacks",),
        rtol=EIG_RTOL,
        atol_rel=EIG_ATOL_REL,
    ),
    *_entries(
        "numpy",
        "Eigenvalue-corrected Shampoo (George et al. 2018; Distributed Shampoo), transcribed",
        {
            f"shampoo-eigenvalue-corrected-{name}": (
                lambda kw=ours_kw: optix.shampoo(0.1, preconditioner="eigenvalue_corrected", **kw),
                lambda kw=ref_kw: numpy_eigenvalue_corrected_shampoo(0.1, **kw),
            )
            for name, (ours_kw, ref_kw) in _ESHAMPOO.items()
        },
        run_on_shapes,
        seed=12,
        shapes=ESHAMPOO_SHAPES,
        fixtures=("x64_callbacks",),
        rtol=ESHAMPOO_RTOL,
        atol_rel=ESHAMPOO_ATOL_REL,
    ),
    *_entries(
        "numpy",
        "Eigenvalue-corrected Shampoo (George et al. 2018; Distributed Shampoo), transcribed",
        {
            f"shampoo-eigenvalue-corrected-{name}": (
                lambda kw=ours_kw: optix.shampoo(0.1, preconditioner="eigenvalue_corrected", **kw),
                lambda kw=ref_kw: numpy_eigenvalue_corrected_shampoo(0.1, **kw),
            )
            for name, (ours_kw, ref_kw) in _ESHAMPOO_ONE_SIDE.items()
        },
        run_on_shapes,
        seed=13,
        shapes=ESHAMPOO_ONE_SIDE_SHAPES,
        fixtures=("x64_callbacks",),
        rtol=ESHAMPOO_RTOL,
        atol_rel=ESHAMPOO_ATOL_REL,
    ),
    *_entries(
        "numpy",
        "SOAP, Algorithm 3 (Vyas et al. 2024)",
        {
            f"soap-{name}": (
                lambda kw=ours_kw: optix.soap(3e-3, weight_decay=0.0, **kw),
                lambda kw=ref_kw: numpy_soap(3e-3, **kw),
            )
            for name, (ours_kw, ref_kw) in _SOAP.items()
        },
        fixtures=("x64_callbacks",),
        rtol=EIG_RTOL,
        atol_rel=EIG_ATOL_REL,
    ),
    *_entries(
        "numpy",
        "psgd_jax kron (Li 2018), transcribed",
        {
            f"psgd_kron-{name}": (
                lambda kw=ours_kw: optix.psgd_kron(0.05, **kw),
                lambda kw=ref_kw: NumpyPsgdKron(0.05, **kw),
            )
            for name, (ours_kw, ref_kw) in _PSGD_KRON.items()
        },
        fixtures=("x64_callbacks",),
        rtol=_PSGD_RTOL,
        atol_rel=_PSGD_ATOL_REL,
    ),
    *_entries(
        "numpy",
        "Muon with Polar Express, Algorithm 1 (Amsel et al. 2025)",
        {
            "muon-polar_express": (
                lambda: optix.muon(0.02, orthogonalize="polar_express"),
                lambda: numpy_muon(0.02),
            ),
        },
        fixtures=("x64_callbacks",),
        seed=12,
    ),
    *_entries(
        "numpy",
        "NorMuon, Algorithm 1 (Li et al. 2025)",
        {
            "normuon": (
                lambda: optix.normuon(0.02),
                lambda: numpy_normuon(0.02),
            ),
            "normuon-decay-b2": (
                lambda: optix.normuon(0.02, b2=0.9, weight_decay=0.1),
                lambda: numpy_normuon(0.02, b2=0.9, weight_decay=0.1),
            ),
        },
        fixtures=("x64_callbacks",),
        seed=13,
    ),
]

BY_ID = {ref.id: ref for ref in REFERENCES}
IDS = [ref.id for ref in REFERENCES]
