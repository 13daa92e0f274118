"""Sign-based transforms: Signum (signSGD with momentum) and Rprop."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState, register_rules


class ScaleBySignumState(NamedTuple):
    """State of :func:`scale_by_signum`: the hyperparameters and the momentum."""

    hyperparams: HyperparamState  # beta
    mu: Updates  # EMA of gradients (decay beta), not bias-corrected (the sign ignores it)


def scale_by_signum(
    beta: ScalarOrSchedule = 0.9, *, mu_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""The sign of an exponential moving average of the gradients (Signum).

    .. math:: m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad u_t = \mathrm{sign}(m_t)

    ``beta = 0`` is signSGD (:func:`optix.scale_by_sign`). For complex leaves
    ``sign(z) = z / |z|``. Matches the paper's Algorithm 1 and optax's ``signum``.

    Args:
      beta: momentum decay in [0, 1).
      mu_dtype: dtype of the momentum; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_signum(0.9), optix.scale_lr(1e-3))

    Reference: Bernstein et al., "signSGD: compressed optimisation for non-convex problems",
    ICML 2018, Algorithm 1.
    """
    _validate.check_unit_interval("beta", beta)
    spec = Hyperparams(beta=beta)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_signum` params")
        return ScaleBySignumState(
            spec.init(), _tree.moments_like(params, mu_dtype, name="mu_dtype")
        )

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_signum")
        hp, hyperparams = spec.step(state.hyperparams)

        def leaf(g, m):
            m_new = hp["beta"] * m + (1 - hp["beta"]) * _tree.upcast(g)
            return jnp.sign(m_new).astype(g.dtype), m_new.astype(m.dtype)

        updates, mu = _tree.map_leaves(leaf, updates, state.mu, n_out=2)
        return updates, ScaleBySignumState(hyperparams, mu)

    return mark_elementwise(GradientTransformation(init, update))


register_rules(ScaleBySignumState, beta=_validate.check_unit_interval)


class ScaleByRpropState(NamedTuple):
    """State of :func:`scale_by_rprop`: per-element step sizes and the last gradient used."""

    hyperparams: HyperparamState  # learning_rate, eta_minus, eta_plus, min/max_step_size
    step_sizes: Updates  # per-element step size divided by the learning rate (starts at 1)
    prev_grad: Updates  # previous gradient, zeroed where its sign flipped (iRprop-)


def _check_eta_plus(name: str, value: ScalarOrSchedule) -> None:
    x = _validate.concrete_float(value)
    if x is not None and not (1.0 < x < math.inf):
        raise ValueError(f"`{name}` must be in (1.0, inf), got {value!r}")


def scale_by_rprop(
    learning_rate: ScalarOrSchedule,
    eta_minus: ScalarOrSchedule = 0.5,
    eta_plus: ScalarOrSchedule = 1.2,
    min_step_size: ScalarOrSchedule = 1e-6,
    max_step_size: ScalarOrSchedule = 50.0,
) -> GradientTransformation:
    r"""Resilient backpropagation: per-element step sizes adapted from gradient sign changes.

    Each element keeps a step size ``s`` that starts at ``learning_rate``. With
    ``p_t = g_t \cdot g_{t-1}``:

    .. math::
        s_t = \mathrm{clip}\big(s_{t-1}\, \eta_t,\ s_{min},\ s_{max}\big), \quad
        \eta_t = \begin{cases}\eta^+ & p_t > 0 \\ \eta^- & p_t < 0 \\ 1 & p_t = 0\end{cases},
        \quad
        \Delta\theta_t = \begin{cases} 0 & p_t < 0 \\
        -s_t\, \mathrm{sign}(g_t) & \text{otherwise}\end{cases}

    and where the sign flipped the gradient is forgotten (``g_t := 0``), so the next step does not
    adapt that element (iRprop-, as torch.optim.Rprop and optax's ``rprop``). This transform
    produces the final step: it holds the learning rate and is not chained with ``scale_lr``.

    The step sizes are stored *relative to* ``learning_rate``: changing it with
    :func:`optix.set_hyperparams`, or scheduling it, rescales every step size by the same factor
    (``min_step_size`` and ``max_step_size`` stay absolute bounds). With a constant learning rate
    this is torch.optim.Rprop, which it is tested against. optax 0.2.8's ``rprop`` computes the
    same step but returns the previous one (all zeros at the first step; google-deepmind/optax
    PR #1725), and does not clamp while ``g_t g_{t-1} = 0``.

    Args:
      learning_rate: the initial step size (> 0 to move at all), or a schedule.
      eta_minus: step-size factor after a sign flip, in (0, 1).
      eta_plus: step-size factor after a sign agreement, > 1.
      min_step_size, max_step_size: bounds on the per-element step size.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_rprop(0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> u, state = tx.update(jnp.array([3.0, 1.0]), state)
      >>> u
      Array([-0.12,  0.  ], dtype=float32)

    Reference: Riedmiller & Braun, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm", ICNN 1993; Igel & Huesken, "Improving the Rprop learning
    algorithm", 2000 (iRprop-).
    """
    _validate.check_nonnegative("learning_rate", learning_rate)
    _validate.check_open_unit_interval("eta_minus", eta_minus)
    _check_eta_plus("eta_plus", eta_plus)
    _validate.check_nonnegative("min_step_size", min_step_size)
    _validate.check_positive("max_step_size", max_step_size)
    lo, hi = _validate.concrete_float(min_step_size), _validate.concrete_float(max_step_size)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"`min_step_size` {lo} must be <= `max_step_size` {hi}")
    spec = Hyperparams(
        learning_rate=learning_rate,
        eta_minus=eta_minus,
        eta_plus=eta_plus,
        min_step_size=min_step_size,
        max_step_size=max_step_size,
    )

    def init(params):
        params = _tree.as_arrays(params)
        _validate.check_float_leaves(params, "`scale_by_rprop` params")
        _validate.check_real_leaves(params, "scale_by_rprop", "it compares gradient signs")
        # relative step sizes are products of many factors: kept in at least float32
        step_sizes = jax.tree.map(lambda p: jnp.ones_like(p, _tree.state_dtype(p.dtype)), params)
        return ScaleByRpropState(spec.init(), step_sizes, _tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        del extra
        _validate.check_updates(updates, state.prev_grad, "scale_by_rprop")
        if params is not None:
            _validate.check_matches_params(updates, params)
        hp, hyperparams = spec.step(state.hyperparams)
        lr = hp["learning_rate"]

        def leaf(g, s, g_prev):
            gc = _tree.upcast(g)
            product = gc * g_prev
            factor = jnp.where(
                product > 0, hp["eta_plus"], jnp.where(product < 0, hp["eta_minus"], 1)
            )
            size = jnp.clip(lr * s * factor, hp["min_step_size"], hp["max_step_size"])
            s_new = jnp.where(lr > 0, size / jnp.where(lr > 0, lr, 1), s)
            flipped = product < 0
            g_kept = jnp.where(flipped, 0, gc)
            u = -(lr * s_new) * jnp.sign(g_kept)
            return u.astype(g.dtype), s_new.astype(s.dtype), g_kept.astype(g_prev.dtype)

        trees = (updates, state.step_sizes, state.prev_grad)
        updates, step_sizes, prev = _tree.map_leaves(leaf, *trees, n_out=3)
        return updates, ScaleByRpropState(hyperparams, step_sizes, prev)

    return mark_elementwise(GradientTransformation(init, update))


register_rules(
    ScaleByRpropState,
    eta_minus=_validate.check_open_unit_interval,
    eta_plus=_check_eta_plus,
    min_step_size=_validate.check_nonnegative,
    max_step_size=_validate.check_positive,
)
