"""Per-coordinate adaptive scaling by accumulated squared gradients: RMSprop, Adagrad, AdaDelta."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: running means of g^2 and (if centered) of g."""

    hyperparams: HyperparamState  # decay, eps
    nu: Updates  # running mean of |g|^2
    mu: Updates | None  # running mean of g (centered only; None otherwise)


def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    *,
    centered: bool = False,
    eps_in_sqrt: bool = False,
    initial_scale: ArrayLike = 0.0,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide updates by the root of a running mean of squared gradients (RMSprop).

    .. math::
        \nu_t = \rho \nu_{t-1} + (1-\rho) |g_t|^2, \qquad
        u_t = g_t / (\sqrt{\nu_t} + \epsilon)

    Centered, ``nu_t`` is replaced by the variance estimate ``nu_t - |m_t|^2`` with
    ``m_t = rho m_{t-1} + (1 - rho) g_t``. The default puts ``eps`` outside the root, as
    torch.optim.RMSprop does; ``eps_in_sqrt=True`` gives optax's ``g / sqrt(nu + eps)``.

    Args:
      decay: ``rho`` in [0, 1).
      eps: added to the denominator for stability.
      centered: divide by the root of the variance instead of the raw second moment.
      eps_in_sqrt: put ``eps`` inside the square root (optax's default) instead of outside.
      initial_scale: initial value of ``nu`` (torch uses 0, optax's default is 0 too).
      nu_dtype: dtype of the moments; default: the param's real dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_rms(0.99), optix.scale_lr(1e-3))

    Reference: Tieleman & Hinton, Lecture 6.5, 2012; Graves, "Generating sequences with recurrent
    neural networks", 2013 (centered).
    """
    _validate.check_unit_interval("decay", decay)
    _validate.check_nonnegative("eps", eps)
    _validate.check_nonnegative("initial_scale", initial_scale)
    spec = Hyperparams(decay=decay, eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_rms` params")
        nu = _tree.moments_like(params, nu_dtype, real=True, fill=initial_scale, name="nu_dtype")
        mu = _tree.moments_like(params, nu_dtype, name="nu_dtype") if centered else None
        return ScaleByRmsState(spec.init(), nu, mu)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.nu, "scale_by_rms")
        hp, hyperparams = spec.step(state.hyperparams)
        rho, eps_ = hp["decay"], hp["eps"]

        def denom(var):
            return jnp.sqrt(var + eps_) if eps_in_sqrt else jnp.sqrt(var) + eps_

        def plain(g, nu):
            gc = _tree.upcast(g)
            nu_new = rho * nu + (1 - rho) * _tree.abs_sq(gc)
            return (gc / denom(nu_new)).astype(g.dtype), nu_new.astype(nu.dtype)

        def with_mean(g, nu, mu):
            gc = _tree.upcast(g)
            nu_new = rho * nu + (1 - rho) * _tree.abs_sq(gc)
            mu_new = rho * mu + (1 - rho) * gc
            u = gc / denom(nu_new - _tree.abs_sq(mu_new))
            return u.astype(g.dtype), nu_new.astype(nu.dtype), mu_new.astype(mu.dtype)

        if centered:
            updates, nu, mu = _tree.map_leaves(with_mean, updates, state.nu, state.mu, n_out=3)
        else:
            (updates, nu), mu = _tree.map_leaves(plain, updates, state.nu, n_out=2), None
        return updates, ScaleByRmsState(hyperparams, nu, mu)

    return mark_elementwise(GradientTransformation(init, update))


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: the running sum of squared gradients."""

    hyperparams: HyperparamState  # eps
    sum_of_squares: Updates


def scale_by_adagrad(
    initial_accumulator_value: ArrayLike = 0.0,
    eps: ScalarOrSchedule = 1e-10,
    *,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide updates by the root of the sum of all past squared gradients (Adagrad).

    .. math:: s_t = s_{t-1} + |g_t|^2, \qquad u_t = g_t / (\sqrt{s_t} + \epsilon)

    This is torch.optim.Adagrad's convention (``eps`` outside the root, ``s_0 = 0``). optax's
    ``scale_by_rss`` instead computes ``g / sqrt(s + eps)`` with ``s_0 = 0.1``.

    Args:
      initial_accumulator_value: ``s_0`` (>= 0).
      eps: added to the denominator.
      accumulator_dtype: dtype of ``s``; default: the param's real dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adagrad(), optix.scale_lr(0.1))

    Reference: Duchi, Hazan & Singer, "Adaptive subgradient methods", JMLR 2011.
    """
    _validate.check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    _validate.check_nonnegative("eps", eps)
    spec = Hyperparams(eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adagrad` params")
        acc = _tree.moments_like(
            params,
            accumulator_dtype,
            real=True,
            fill=initial_accumulator_value,
            name="accumulator_dtype",
        )
        return ScaleByAdagradState(spec.init(), acc)

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.sum_of_squares, "scale_by_adagrad")
        hp, hyperparams = spec.step(state.hyperparams)

        def leaf(g, s):
            gc = _tree.upcast(g)
            s_new = s + _tree.abs_sq(gc)
            return (gc / (jnp.sqrt(s_new) + hp["eps"])).astype(g.dtype), s_new.astype(s.dtype)

        updates, acc = _tree.map_leaves(leaf, updates, state.sum_of_squares, n_out=2)
        return updates, ScaleByAdagradState(hyperparams, acc)

    return mark_elementwise(GradientTransformation(init, update))


class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`: running means of squared gradients and steps."""

    hyperparams: HyperparamState  # rho, eps
    e_g: Updates  # running mean of |g|^2
    e_x: Updates  # running mean of |delta|^2


def scale_by_adadelta(
    rho: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-6,
    *,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Scale by the ratio of running RMS of past steps to running RMS of gradients (AdaDelta).

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) |g_t|^2, \quad
        \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t,
        \quad E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho) |\Delta_t|^2

    The update is ``Delta_t``; :func:`optix.adadelta` multiplies it by ``-learning_rate`` (1.0 in
    the paper and by default), as torch.optim.Adadelta does.

    Args:
      rho: decay of both running means, in [0, 1).
      eps: added inside both roots.
      accumulator_dtype: dtype of the running means; default: the param's real dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adadelta(), optix.scale_lr(1.0))

    Reference: Zeiler, "ADADELTA: an adaptive learning rate method", 2012.
    """
    _validate.check_unit_interval("rho", rho)
    _validate.check_nonnegative("eps", eps)
    spec = Hyperparams(rho=rho, eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adadelta` params")

        def zeros():  # one buffer each: a donated state must not hold one buffer twice
            return _tree.moments_like(
                params, accumulator_dtype, real=True, name="accumulator_dtype"
            )

        return ScaleByAdadeltaState(spec.init(), zeros(), zeros())

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.e_g, "scale_by_adadelta")
        hp, hyperparams = spec.step(state.hyperparams)
        r, e = hp["rho"], hp["eps"]

        def leaf(g, e_g, e_x):
            gc = _tree.upcast(g)
            # (1 - rho) |x|^2 as |sqrt(1 - rho) x|^2: finite wherever the running mean is
            c = jnp.sqrt(1 - r)
            e_g_new = r * e_g + _tree.abs_sq(c * gc)
            delta = jnp.sqrt(e_x + e) / jnp.sqrt(e_g_new + e) * gc
            e_x_new = r * e_x + _tree.abs_sq(c * delta)
            return delta.astype(g.dtype), e_g_new.astype(e_g.dtype), e_x_new.astype(e_x.dtype)

        updates, e_g, e_x = _tree.map_leaves(leaf, updates, state.e_g, state.e_x, n_out=3)
        return updates, ScaleByAdadeltaState(hyperparams, e_g, e_x)

    return mark_elementwise(GradientTransformation(init, update))
