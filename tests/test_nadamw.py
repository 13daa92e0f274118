"""optix's versions of optax names it lacked, against optax (and torch) step by step.

Method and tolerance as in ``tests/reference.py``: float64 (``x64``), ``N_STEPS`` (120)
teacher-forced steps on a scalar, a vector and a matrix leaf, gradients from 1e-3 to 30 with exact
zeros and one all-zero step, every step's updates compared leaf by leaf at ``rtol=1e-10``. Where
optix's default convention differs from optax's, the optax convention is the option checked here,
and a test shows that the two differ by far more than the tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optix
from tests.reference import (
    N_STEPS,
    SHAPES,
    assert_updates_close,
    gradient_stream,
    params_stream,
    run_teacher_forced,
)


def _mask(params):
    return {k: v.ndim >= 1 for k, v in params.items()}


def _every_third_skipped(step):
    return step % 3 != 0


# name -> (optix factory, optax factory); both built inside the test, with x64 on.
CASES: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
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
            mask=_mask,
            momentum_schedule=False,
            eps_root=1e-10,
        ),
        lambda: optax.nadamw(
            1e-2, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10, weight_decay=1e-3, mask=_mask
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
        lambda: optix.adamaxw(1e-2, b1=0.85, b2=0.99, eps=1e-3, weight_decay=0.1, mask=_mask),
        lambda: optax.adamaxw(1e-2, b1=0.85, b2=0.99, eps=1e-3, weight_decay=0.1, mask=_mask),
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


@pytest.mark.parametrize("name", list(CASES))
def test_matches_optax_step_by_step(name, x64):
    make_ours, make_theirs = CASES[name]
    run_teacher_forced(make_ours(), make_theirs(), name)


# ---------------------------------------------------------------------------------------------
# Where optix's default differs from optax's: the difference is far above the tolerance.
# ---------------------------------------------------------------------------------------------


def _max_rel_diff(ours, theirs, seed: int = 0) -> float:
    """The largest relative difference of the two transforms' updates over teacher-forced steps."""
    grads, params = gradient_stream(seed), params_stream(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    s_ours, s_theirs = ours.init(as_jax(params[0])), theirs.init(as_jax(params[0]))
    worst = 0.0
    for g, p in zip(grads, params, strict=True):
        u_ours, s_ours = ours.update(as_jax(g), s_ours, as_jax(p))
        with jax.numpy_dtype_promotion("standard"):
            u_theirs, s_theirs = theirs.update(as_jax(g), s_theirs, as_jax(p))
        for k in SHAPES:
            a, b = np.asarray(u_ours[k]), np.asarray(u_theirs[k])
            worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(b) + 1e-300), initial=0.0)))
    return worst


def test_nadamw_default_is_dozats_rule_not_optaxs(x64):
    ours = optix.nadamw(3e-3, weight_decay=0.05)
    assert _max_rel_diff(ours, optax.nadamw(3e-3, weight_decay=0.05)) > 1e-3


def test_scale_by_stddev_default_puts_eps_outside_the_root_unlike_optax(x64):
    assert _max_rel_diff(optix.scale_by_stddev(0.9, 1e-2), optax.scale_by_stddev(0.9, 1e-2)) > 1e-3


# ---------------------------------------------------------------------------------------------
# nadamw's default against torch.optim.NAdam(decoupled_weight_decay=True).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "torch_kwargs"),
    [
        ({"weight_decay": 1e-2}, {"weight_decay": 1e-2}),
        (
            {"b1": 0.8, "b2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "momentum_decay": 1e-2},
            {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "momentum_decay": 1e-2},
        ),
    ],
)
def test_nadamw_matches_torch_nadam_with_decoupled_decay(kwargs, torch_kwargs, x64):
    """Teacher-forced: torch steps from the same params and gradient; its update is read back as
    ``new - old``, which costs up to one ulp of the param (hence ``atol=1e-12``, as
    tests/test_reference_torch.py); torch's scalars (NAdam's ``mu_product``) kept in float64."""
    torch = pytest.importorskip("torch")
    old_default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        lr = 2e-3
        grads, params = gradient_stream(4), params_stream(4)
        tparams = {k: torch.tensor(params[0][k], requires_grad=True) for k in SHAPES}
        topt = torch.optim.NAdam(
            list(tparams.values()), lr=lr, decoupled_weight_decay=True, **torch_kwargs
        )
        tx = optix.nadamw(lr, **kwargs)
        state = tx.init({k: jnp.asarray(v) for k, v in params[0].items()})
        update = jax.jit(tx.update)
        for t in range(N_STEPS):
            with torch.no_grad():
                for k, p in tparams.items():
                    p.copy_(torch.tensor(params[t][k]))
            for k, p in tparams.items():
                p.grad = torch.tensor(grads[t][k])
            topt.step()
            want = {k: p.detach().numpy() - params[t][k] for k, p in tparams.items()}
            got, state = update(
                {k: jnp.asarray(v) for k, v in grads[t].items()},
                state,
                {k: jnp.asarray(v) for k, v in params[t].items()},
            )
            for k in SHAPES:
                np.testing.assert_allclose(
                    np.asarray(got[k]), want[k], rtol=1e-9, atol=1e-12, err_msg=f"{k} step {t}"
                )
    finally:
        torch.set_default_dtype(old_default)


# ---------------------------------------------------------------------------------------------
# polyak_sgd reads the loss from `value=`: its own teacher-forced loop.
# ---------------------------------------------------------------------------------------------


def _values(seed: int) -> list[float]:
    """Losses from 1e-3 to 30; every seventh below ``f_min = 0.5`` (a negative gap)."""
    rng = np.random.default_rng(seed + 2000)
    return [
        0.1 * rng.uniform() if t % 7 == 3 else float(np.exp(rng.uniform(math.log(1e-3), 3.4)))
        for t in range(N_STEPS)
    ]


def _run_polyak(ours, theirs, seed: int = 0, *, transcription=None) -> None:
    grads, params, values = gradient_stream(seed), params_stream(seed), _values(seed)
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}  # noqa: E731
    state = ours.init(as_jax(params[0]))
    update = jax.jit(ours.update)
    if theirs is not None:
        their_state = theirs.init(as_jax(params[0]))
        their_update = jax.jit(theirs.update)
    for t in range(N_STEPS):
        g, p, v = as_jax(grads[t]), as_jax(params[t]), jnp.float64(values[t])
        u, state = update(g, state, p, value=v)
        if theirs is not None:
            with jax.numpy_dtype_promotion("standard"):
                want, their_state = their_update(g, their_state, p, value=v)
        else:
            want = transcription(grads[t], values[t])
        assert_updates_close(u, want, t, "polyak_sgd")


@pytest.mark.parametrize("variant", ["sps", "sps+"])
@pytest.mark.parametrize(("max_lr", "eps"), [(1.0, 0.0), (0.05, 1e-3)])
def test_polyak_sgd_matches_optax(variant, max_lr, eps, x64):
    kwargs = {"max_learning_rate": max_lr, "f_min": 0.5, "eps": eps, "variant": variant}
    _run_polyak(optix.polyak_sgd(**kwargs), optax.polyak_sgd(**kwargs))


def test_polyak_sgd_scaling_is_outside_the_step_size(x64):
    """``-s min(gap / (|g|^2 + eps), gamma_max) g``; optax scales g by s before the step size."""
    s, f_min, max_lr, eps = 0.3, 0.5, 2.0, 1e-3

    def transcription(g, value):
        sq = sum(float(np.sum(x * x)) for x in g.values())
        step = (
            0.0 if sq + eps <= 2.220446049250313e-16 else min((value - f_min) / (sq + eps), max_lr)
        )
        return {k: -s * step * x for k, x in g.items()}

    ours = optix.polyak_sgd(max_lr, scaling=s, f_min=f_min, eps=eps)
    _run_polyak(ours, None, transcription=transcription)
    theirs = optax.polyak_sgd(max_lr, scaling=s, f_min=f_min, eps=eps)
    with pytest.raises(AssertionError, match="polyak_sgd"):
        _run_polyak(optix.polyak_sgd(max_lr, scaling=s, f_min=f_min, eps=eps), theirs)


# ---------------------------------------------------------------------------------------------
# Functions (not transforms): periodic_update and per-example clipping.
# ---------------------------------------------------------------------------------------------


def test_periodic_update_matches_optax(x64):
    rng = np.random.default_rng(0)
    new = {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}
    old = {k: jnp.asarray(rng.standard_normal(s)) for k, s in SHAPES.items()}
    for step in range(13):
        got = jax.jit(optix.periodic_update, static_argnums=3)(new, old, step, 4)
        want = optax.periodic_update(new, old, step, 4)
        for k in SHAPES:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"step {step}")


def _batched_grads(rng, batch: int = 16) -> dict[str, jax.Array]:
    shapes = {"scalar": (), "vector": (6,), "matrix": (3, 4), "kernel": (2, 3, 2)}
    out = {}
    for k, s in shapes.items():
        scales = np.exp(rng.uniform(-3, 2, size=(batch,) + (1,) * len(s)))
        out[k] = jnp.asarray(scales * rng.standard_normal((batch,) + s))
    out["vector"] = out["vector"].at[3].set(0.0)  # an all-zero example in one leaf
    return out


@pytest.mark.parametrize("clip", [0.0, 0.5, 3.0, 1e9])
def test_per_example_global_norm_clip_matches_optax(clip, x64):
    grads = _batched_grads(np.random.default_rng(1))
    zero_example = jax.tree.map(lambda g: g.at[5].set(0.0), grads)  # 0/0 never happens
    for tree in (grads, zero_example):
        got, n_got = optix.per_example_global_norm_clip(tree, clip)
        want, n_want = optax.per_example_global_norm_clip(tree, clip)
        assert int(n_got) == int(n_want)
        for k in tree:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("clip", [0.0, 0.5, 3.0, 1e9])
def test_per_example_layer_norm_clip_matches_optax(clip, uniform, x64):
    grads = _batched_grads(np.random.default_rng(2))
    got, n_got = optix.per_example_layer_norm_clip(grads, clip, uniform)
    want, n_want = optax.per_example_layer_norm_clip(grads, clip, uniform)
    for k in grads:
        assert int(n_got[k]) == int(n_want[k]), k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15)


def test_zero_nans_matches_optax_where_there_are_nans(x64):
    g = {
        "scalar": jnp.float64(jnp.nan),
        "vector": jnp.asarray([1.0, jnp.nan, -jnp.inf, 0.0, jnp.nan, 2.0]),
        "matrix": jnp.ones((3, 4)),
    }
    ours, theirs = optix.zero_nans(), optax.zero_nans()
    u, s = ours.update(g, ours.init(g))
    u_optax, s_optax = theirs.update(g, theirs.init(g))
    for k in g:
        np.testing.assert_array_equal(u[k], u_optax[k])
        assert bool(s.found_nan[k]) == bool(s_optax.found_nan[k])
