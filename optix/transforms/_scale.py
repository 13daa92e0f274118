"""Scaling: by a constant, by the learning rate (the one place a sign is flipped), by a schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _validate
from optix._base import EmptyState
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import ScalarOrSchedule
from optix._fusable import mark_elementwise
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only


def _scaling(
    name: str,
    transform: str,
    value: ScalarOrSchedule,
    sign: float,
    state_cls: Callable[[HyperparamState], OptState],
) -> GradientTransformation:
    def apply(updates, params, h):
        return multiply(updates, sign * h[name])

    tx = hyperparams_only(transform, state_cls, Hyperparams(**{name: value}), apply)
    return mark_elementwise(tx)


class ScaleState(NamedTuple):
    """State of :func:`scale`: its hyperparameters only."""

    hyperparams: HyperparamState  # factor


@transform(ScaleState)
def scale(factor: Finite) -> GradientTransformation:
    """Multiply updates by ``factor`` (a number or a schedule); no sign is flipped.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale(0.5)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([0.5, 0.5], dtype=float32)
    """
    return _scaling("factor", "scale", factor, 1.0, ScaleState)


class ScaleLrState(NamedTuple):
    """State of :func:`scale_lr`: its hyperparameters only."""

    hyperparams: HyperparamState  # learning_rate


@transform(ScaleLrState)
def scale_lr(learning_rate: NonNegative) -> GradientTransformation:
    r"""Turn a direction into a step: multiply by ``-learning_rate``.

    .. math:: u_t = -\eta_t \, d_t

    This is the only transform in optix that flips a sign; :func:`optix.apply_updates` only adds.

    Args:
      learning_rate: a number >= 0, or a schedule ``step -> rate`` (see ``optix.schedules``).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_lr(0.1)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([-0.1, -0.1], dtype=float32)
    """
    return _scaling("learning_rate", "scale_lr", learning_rate, -1.0, ScaleLrState)


class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule`: its hyperparameters (the scheduled value)."""

    hyperparams: HyperparamState  # scale (scheduled)


def scale_by_schedule(schedule: ScalarOrSchedule) -> GradientTransformation:
    """Multiply updates by ``schedule(count)``, where count is the number of updates so far.

    No sign is flipped; pair it with ``scale(-1.0)`` or use :func:`scale_lr` with the schedule.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_schedule(optix.schedules.linear(1.0, 0.0, 10))
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([1., 1.], dtype=float32)
    """
    if not callable(schedule):
        raise TypeError(f"`schedule` must be callable (step -> value), got {schedule!r}")
    return _scaling("scale", "scale_by_schedule", schedule, 1.0, ScaleByScheduleState)


def scale_by_sign() -> GradientTransformation:
    """Replace each update by its sign (``x / |x|`` for complex), as in signSGD.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.scale_by_sign().update(jnp.array([-3.0, 0.0, 2.0]), optix.EmptyState())[0]
      Array([-1.,  0.,  1.], dtype=float32)
    """

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_sign` params")
        return EmptyState()

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`scale_by_sign` updates")
        return jax.tree.map(jnp.sign, updates), state

    return mark_elementwise(GradientTransformation(init, update))
