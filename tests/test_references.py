"""optix against torch.optim, step by step, in float64.

Each case runs torch's optimizer for ``N_STEPS`` steps on a small pytree of params (a scalar, a
vector and a matrix) with seeded random gradients whose magnitude changes from step to step
(1e-4 to 10: small first, then large, small again, then mixed; plus one all-zero step). optix is
teacher-forced: at every step it gets the same params and gradient torch had, its own state
evolves by its own updates, and its update must equal torch's ``new_param - old_param`` leaf by
leaf at *every* step.

Tolerance: ``rtol=1e-9, atol=1e-12``. Both libraries compute in float64 (machine epsilon 2.2e-16);
they order the same arithmetic differently (``lerp`` against ``b*m + (1-b)*g``, dividing the lr
by the bias correction before or after, and so on), which costs a few ulps per operation, and
teacher forcing keeps those differences from compounding through the params. Torch's update is
read back as ``new - old``, which loses up to one ulp of ``|param|`` (< 1e-15 here) to
cancellation: that is what ``atol`` covers for tiny updates. The largest relative difference
observed over all cases is about 4e-13. Deliberate convention changes are caught with room to
spare: eps outside versus inside the max (Adamax) or the root (RMSprop, Adam's ``eps_root``),
float32 instead of float64 NAdam ``mu_product`` (about 1e-8 relative), and wrong dampening,
AMSGrad, RAdam threshold or eps values (1e-5 to 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optix

torch = pytest.importorskip("torch")

N_STEPS = 120  # > 100, and far past RAdam's switch to the rectified step (rho_t > 5 at step 6)
ZERO_STEP = 7  # one step with an all-zero gradient
SHAPES = {"scalar": (), "vector": (5,), "matrix": (3, 4)}
RTOL, ATOL = 1e-9, 1e-12  # see the module docstring


@pytest.fixture
def torch64():
    """torch's default dtype float64: torch keeps some optimizer scalars (NAdam's ``mu_product``,
    the ``step`` counters) in the default dtype, which would otherwise be float32."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _initial_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float64) for k, s in SHAPES.items()}


def _gradient_scale(step: int, rng: np.random.Generator) -> float:
    """Small gradients first (so eps matters while the moments are small), then large ones, then
    small again (moments decaying from large values), then mixed; one step is all zeros."""
    if step == ZERO_STEP:
        return 0.0
    low, high = next(bounds for end, bounds in _SCALE_BLOCKS if step < end)
    return 10.0 ** rng.uniform(low, high)


# (end step, (low, high) log10 bounds of the gradient scale) for consecutive blocks of steps
_SCALE_BLOCKS = [(20, (-4.0, -2.0)), (60, (-1.0, 1.0)), (90, (-3.0, -2.0)), (N_STEPS, (-3.0, 1.0))]


def _gradients(seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Per-step random normal gradients, scaled per step by :func:`_gradient_scale`."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(N_STEPS):
        scale = _gradient_scale(step, rng)
        out.append({k: scale * rng.normal(size=s) for k, s in SHAPES.items()})
    return out


def _run_against_torch(
    make_optix: Callable[[], optix.GradientTransformation],
    make_torch: Callable[[list], tuple],
) -> None:
    """Teacher-forced comparison at every step. ``make_torch(params)`` returns ``(optimizer,
    scheduler or None)``; the scheduler, if any, is stepped after each optimizer step."""
    init = _initial_params()
    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
    topt, tsched = make_torch(list(tparams.values()))

    tx = make_optix()
    state = tx.init({k: jnp.asarray(v) for k, v in init.items()})
    update = jax.jit(tx.update)

    for step, grad in enumerate(_gradients()):
        old = {k: p.detach().numpy().copy() for k, p in tparams.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grad[k], dtype=torch.float64)
        topt.step()
        if tsched is not None:
            tsched.step()
        expected = {k: p.detach().numpy() - old[k] for k, p in tparams.items()}

        updates, state = update(
            {k: jnp.asarray(g) for k, g in grad.items()},
            state,
            {k: jnp.asarray(v) for k, v in old.items()},
        )
        for k in SHAPES:
            got = np.asarray(updates[k])
            assert got.dtype == np.float64 and got.shape == SHAPES[k], (k, got.dtype, got.shape)
            np.testing.assert_allclose(
                got, expected[k], rtol=RTOL, atol=ATOL, err_msg=f"leaf {k!r}, step {step}"
            )


optim = torch.optim

# (id, optix factory, torch factory). Factories are called inside the test, with x64 on.
CASES = [
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


@pytest.mark.parametrize(
    ("make_optix", "make_torch"),
    [pytest.param(o, t, id=name) for name, o, t in CASES],
)
def test_matches_torch(x64, torch64, make_optix, make_torch):
    _run_against_torch(make_optix, lambda ps: (make_torch(ps), None))


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
SCHEDULE_CASES = [
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


@pytest.mark.parametrize(
    ("make_optix", "make_torch", "factor"),
    [pytest.param(o, t, f, id=name) for name, o, t, f in SCHEDULE_CASES],
)
def test_schedule_matches_torch(x64, torch64, make_optix, make_torch, factor):
    def make(ps):
        opt = make_torch(ps)
        return opt, optim.lr_scheduler.LambdaLR(opt, factor)

    _run_against_torch(make_optix, make)


def test_lambda_factors_match_optix_schedules(x64):
    """The LambdaLR factors above are optix's schedules divided by the base lr, step by step."""
    exp = optix.schedules.exponential_decay(1e-2, 10, 0.5)
    cos = optix.schedules.cosine_decay(1e-2, 50, alpha=0.1)
    for k in range(N_STEPS):
        np.testing.assert_allclose(float(exp(k)), 1e-2 * _exponential(k), rtol=1e-13)
        np.testing.assert_allclose(float(cos(k)), 1e-2 * _cosine(k), rtol=1e-13)
