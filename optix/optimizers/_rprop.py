r"""Rprop: per-element step sizes grown while the gradient keeps its sign, cut when it flips.

Reference: Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning: the
RPROP algorithm", ICNN 1993; Igel & Huesken, "Improving the Rprop learning algorithm", 2000
(iRprop-).
"""

from __future__ import annotations

import math
from typing import Annotated
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import ScalarOrSchedule
from optix._base import Updates
from optix._fusable import mark_elementwise
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import OpenFraction
from optix.toolkit import Positive
from optix.toolkit import Range
from optix.toolkit import checked
from optix.toolkit import leafwise
from optix.toolkit import transform


class ScaleByRpropState(NamedTuple):
    """State of :func:`scale_by_rprop`: per-element step sizes and the last gradient used."""

    hyperparams: HyperparamState  # learning_rate, eta_minus, eta_plus, min/max_step_size
    step_sizes: Updates  # per-element step size divided by the learning rate (starts at 1)
    prev_grad: Updates  # previous gradient, zeroed where its sign flipped (iRprop-)


def _check_eta_plus(name: str, value: object) -> None:
    x = _validate.concrete_float(value)
    if x is not None and not (1.0 < x < math.inf):
        raise ValueError(f"`{name}` must be in (1.0, inf), got {value!r}")


EtaPlus = Annotated[ScalarOrSchedule, Range(_check_eta_plus)]
"""Rprop's step-size growth factor: a finite number > 1."""


@transform(ScaleByRpropState)
def scale_by_rprop(
    learning_rate: NonNegative,
    eta_minus: OpenFraction = 0.5,
    eta_plus: EtaPlus = 1.2,
    min_step_size: NonNegative = 1e-6,
    max_step_size: Positive = 50.0,
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
        h, hyperparams = spec.step(state.hyperparams)
        lr, eta_minus, eta_plus = h.learning_rate, h.eta_minus, h.eta_plus
        min_step, max_step = h.min_step_size, h.max_step_size

        def rprop_(g, s, g_prev):
            product = g * g_prev
            factor = jnp.where(product > 0, eta_plus, jnp.where(product < 0, eta_minus, 1))
            size = jnp.clip(lr * s * factor, min_step, max_step)
            s = jnp.where(lr > 0, size / jnp.where(lr > 0, lr, 1), s)
            g = jnp.where(product < 0, 0, g)  # forgotten where the sign flipped
            return -(lr * s) * jnp.sign(g), s, g

        updates, step_sizes, prev = leafwise(rprop_, updates, state.step_sizes, state.prev_grad)
        return updates, ScaleByRpropState(hyperparams, step_sizes, prev)

    return mark_elementwise(GradientTransformation(init, update))


@checked
def rprop(
    learning_rate: NonNegative = 1e-2,
    eta_minus: OpenFraction = 0.5,
    eta_plus: EtaPlus = 1.2,
    min_step_size: NonNegative = 1e-6,
    max_step_size: Positive = 50.0,
) -> GradientTransformation:
    r"""Rprop: per-element step sizes grown while the gradient keeps its sign, cut when it flips.

    .. math::
        s_t = \mathrm{clip}(s_{t-1} \eta^{\pm}, s_{min}, s_{max}), \qquad
        \theta_t = \theta_{t-1} - s_t\, \mathrm{sign}(g_t)

    with ``eta_plus`` after agreeing signs, ``eta_minus`` after a flip (which skips that
    element's step and its next adaptation: iRprop-). ``learning_rate`` is the initial step
    size. This is :func:`scale_by_rprop` itself, which produces the step (no ``scale_lr``).
    Matches torch.optim.Rprop, defaults included; optax 0.2.8's ``rprop`` applies each step one
    update late. Rprop is a full-batch method: the step sizes assume gradient signs that are not
    noise.

    Args:
      learning_rate: initial step size >= 0, or a schedule (it scales every step size).
      eta_minus: factor in (0, 1) after a sign flip; eta_plus: factor > 1 after agreement.
      min_step_size, max_step_size: bounds on each step size.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.rprop(0.1)
      >>> tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))[0]
      Array([ 0.1, -0.1], dtype=float32)

    Reference: Riedmiller & Braun, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm", ICNN 1993.
    """
    return scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
