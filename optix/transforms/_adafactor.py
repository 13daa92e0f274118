"""Adafactor's pieces: the factored second moment, the param-scale step, and its plain EMA momentum."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._hyperparams import Hyperparams, HyperparamState, register_rules
from optix.transforms._common import hyperparams_only
from optix.transforms._trust_ratio import leaf_norm


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """``(d1, d0)``: the second-largest and the largest axis of ``shape``, or None (unfactored).

    A leaf is factored when it has two or more axes and its second-largest axis has at least
    ``min_dim_size_to_factor`` elements. Ties go to the later axis for ``d0``, as in optax.
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _mean(x: jax.Array, axis: int, keepdims: bool = False) -> jax.Array:
    """The mean along ``axis`` as a sum of ``x / n``: finite whenever every entry is (a plain sum
    of squared gradients overflows first)."""
    return jnp.sum(x / x.shape[axis], axis=axis, keepdims=keepdims)


class ScaleByFactoredRmsState(NamedTuple):
    """State of :func:`scale_by_factored_rms`: the (factored) second-moment statistics."""

    hyperparams: HyperparamState  # decay_rate, decay_offset, eps; count is t - 1
    v_row: Updates  # factored leaves: mean of g^2 over axis d0; others: a (1,) placeholder
    v_col: Updates  # factored leaves: mean of g^2 over axis d1; others: a (1,) placeholder
    v: Updates  # unfactored leaves: running mean of g^2; factored ones: a (1,) placeholder


register_rules(
    ScaleByFactoredRmsState,
    decay_rate=_validate.check_nonnegative,
    decay_offset=_validate.check_finite,
)


def scale_by_factored_rms(
    decay_rate: ScalarOrSchedule = 0.8,
    decay_offset: ScalarOrSchedule = 0,
    eps: ScalarOrSchedule = 1e-30,
    *,
    factored: bool = True,
    min_dim_size_to_factor: int = 128,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide by the root of a (factored) running mean of squared gradients, as in Adafactor.

    With the decay schedule ``beta_t = 1 - (t - offset)^(-c)`` (``c = decay_rate``, ``t`` the
    1-based step) and ``G = |g_t|^2 + eps1``: a leaf with a second-largest axis ``d1`` of at least
    ``min_dim_size_to_factor`` elements (and largest axis ``d0``) keeps row and column means only,

    .. math::
        R_t = \beta_t R_{t-1} + (1-\beta_t) \operatorname{mean}_{d_0} G, \quad
        C_t = \beta_t C_{t-1} + (1-\beta_t) \operatorname{mean}_{d_1} G, \quad
        u_t = g_t \Big/ \sqrt{R_t C_t / \operatorname{mean}_{d_1} R_t}

    and every other leaf (scalars, vectors, small matrices) keeps the full
    ``V_t = beta_t V_{t-1} + (1-beta_t) G`` and gets ``u_t = g_t / sqrt(V_t)``. This is
    ``optax.scale_by_factored_rms``; the decay schedule is computed in the hyperparameter precision
    (optax computes it in float32 even under x64).

    Args:
      decay_rate: ``c`` >= 0 (0.8 in the paper).
      decay_offset: step offset of the decay schedule (for fine-tuning, the step it started at).
      eps: ``eps1`` >= 0, added to ``|g|^2`` (1e-30 in the paper).
      factored: factor large leaves (False: never).
      min_dim_size_to_factor: the second-largest axis a factored leaf needs.
      nu_dtype: dtype of the statistics (default: the param's real dtype widened to at least float32).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_factored_rms(), optix.scale_lr(1e-2))

    Reference: Shazeer & Stern, "Adafactor: adaptive learning rates with sublinear memory cost",
    ICML 2018 (Algorithms 4 and 5).
    """
    _validate.check_nonnegative("decay_rate", decay_rate)
    _validate.check_finite("decay_offset", decay_offset)
    _validate.check_nonnegative("eps", eps)
    _validate.check_int("min_dim_size_to_factor", min_dim_size_to_factor, 1)
    spec = Hyperparams(decay_rate=decay_rate, decay_offset=decay_offset, eps=eps)

    def dims(x):
        return factored_dims(tuple(x.shape), factored, min_dim_size_to_factor)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_factored_rms` params")
        params = _tree.as_arrays(params)
        _tree.check_state_dtype("nu_dtype", nu_dtype)

        def stats(p):
            dt = _tree.real_dtype(_tree.state_dtype(p.dtype, nu_dtype))
            fd = dims(p)
            if fd is None:  # (1,) placeholders, one buffer each (a donated state must not alias)
                return (
                    jnp.zeros((1,), dt),
                    jnp.zeros((1,), dt),
                    jnp.zeros_like(p, dtype=dt),
                )  # keeps the param's sharding
            d1, d0 = fd
            row = jnp.zeros(tuple(n for a, n in enumerate(p.shape) if a != d0), dt)
            col = jnp.zeros(tuple(n for a, n in enumerate(p.shape) if a != d1), dt)
            return row, col, jnp.zeros((1,), dt)

        leaves, treedef = jax.tree.flatten(params)
        cols = list(zip(*[stats(p) for p in leaves], strict=True)) or [(), (), ()]
        rows, columns, full = (treedef.unflatten(list(c)) for c in cols)
        return ScaleByFactoredRmsState(spec.init(), rows, columns, full)

    def update(updates, state, params=None, **extra):
        del params, extra
        # state.v holds a (1,) placeholder for factored leaves, so only float leaves and the
        # structure are checked against it (not shapes)
        _validate.check_float_leaves(updates, "`scale_by_factored_rms` updates")
        _validate.check_same_structure(
            updates, state.v, "updates", "the `scale_by_factored_rms` state"
        )
        step = state.hyperparams.count
        hp, hyperparams = spec.step(state.hyperparams)
        # Before the offset the schedule stays at its first step (t = 1, beta = 0), where
        # t^(-c) would be infinite (t = 0) or NaN (t < 0).
        t = jnp.maximum(step.astype(hp["decay_rate"].dtype) - hp["decay_offset"] + 1, 1)
        beta = 1 - t ** (-hp["decay_rate"])

        def leaf(g, row, col, v):
            gc = _tree.upcast(g)
            sq = _tree.abs_sq(gc) + hp["eps"]
            fd = dims(g)
            if fd is None:
                v_new = beta * v + (1 - beta) * sq
                u = gc * jax.lax.rsqrt(v_new)
                return u.astype(g.dtype), row, col, v_new.astype(v.dtype)
            d1, d0 = fd
            row_new = beta * row + (1 - beta) * _mean(sq, d0)
            col_new = beta * col + (1 - beta) * _mean(sq, d1)
            row_axis = d1 - 1 if d1 > d0 else d1  # d1's position once d0 is removed
            # rsqrt(R / mean R) as rsqrt(R) sqrt(mean R): a quotient of two huge statistics would
            # go through a reciprocal below the float range (flushed to 0, so rsqrt(0) = inf)
            row_mean = _mean(row_new, row_axis, keepdims=True)
            row_factor = jax.lax.rsqrt(row_new) * jnp.sqrt(row_mean)
            col_factor = jax.lax.rsqrt(col_new)
            u = gc * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1)
            return u.astype(g.dtype), row_new.astype(row.dtype), col_new.astype(col.dtype), v

        trees = (updates, state.v_row, state.v_col, state.v)
        updates, v_row, v_col, v = _tree.map_leaves(leaf, *trees, n_out=4)
        return updates, ScaleByFactoredRmsState(hyperparams, v_row, v_col, v)

    return GradientTransformation(init, update)


class ScaleByParamBlockRmsState(NamedTuple):
    """State of :func:`scale_by_param_block_rms`: its hyperparameters only."""

    hyperparams: HyperparamState  # min_scale


def scale_by_param_block_rms(min_scale: ScalarOrSchedule = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by the root mean square of its params, floored at ``min_scale``.

    .. math:: u = g \, \max\big(\mathrm{rms}(\theta), \epsilon_2\big)

    This turns a learning rate into Adafactor's *relative* step size (``epsilon_2 = 1e-3`` in the
    paper), as ``optax.scale_by_param_block_rms`` does.

    Args:
      min_scale: ``epsilon_2`` >= 0.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_param_block_rms()
      >>> params = {"w": jnp.array([3.0, -3.0])}
      >>> tx.update({"w": jnp.ones(2)}, tx.init(params), params)[0]["w"]
      Array([3., 3.], dtype=float32)

    Reference: Shazeer & Stern, ICML 2018, section 8 (relative step size).
    """
    _validate.check_nonnegative("min_scale", min_scale)
    spec = Hyperparams(min_scale=min_scale)

    def apply(updates, params, hp):
        def leaf(u, p):
            rms = leaf_norm(p) / math.sqrt(max(p.size, 1))  # a norm by scaling: no overflow
            return (_tree.upcast(u) * jnp.maximum(rms, hp["min_scale"])).astype(u.dtype)

        return _tree.map_leaves(leaf, updates, params)

    return hyperparams_only(
        "scale_by_param_block_rms", ScaleByParamBlockRmsState, spec, apply, needs_params=True
    )


class AdafactorMomentumState(NamedTuple):
    """State of Adafactor's momentum: an exponential moving average, not bias-corrected."""

    hyperparams: HyperparamState  # momentum
    mu: Updates


def adafactor_momentum(
    momentum: ScalarOrSchedule = 0.9, *, mu_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""An exponential moving average of the updates, without bias correction (Adafactor's
    optional momentum, ``optax.ema(momentum, debias=False)``).

    .. math:: m_t = \beta m_{t-1} + (1 - \beta) u_t, \qquad m_0 = 0

    Args:
      momentum: ``beta`` in [0, 1).
      mu_dtype: dtype of the average (default: the param's dtype widened to at least float32).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.adafactor_momentum(0.9), optix.scale_lr(1e-2))
    """
    _validate.check_unit_interval("momentum", momentum)
    spec = Hyperparams(momentum=momentum)

    def init(params):
        _validate.check_float_leaves(params, "`adafactor_momentum` params")
        return AdafactorMomentumState(
            spec.init(), _tree.moments_like(params, mu_dtype, name="mu_dtype")
        )

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "adafactor_momentum")
        hp, hyperparams = spec.step(state.hyperparams)
        beta = hp["momentum"]

        def leaf(u, m):
            m_new = beta * m + (1 - beta) * _tree.upcast(u)
            return m_new.astype(u.dtype), m_new.astype(m.dtype)

        updates, mu = _tree.map_leaves(leaf, updates, state.mu, n_out=2)
        return updates, AdafactorMomentumState(hyperparams, mu)

    return GradientTransformation(init, update)
