r"""The Polyak step size (SPS): a step set by the loss gap to a known minimum value; SGD with it.

Reference: Loizou, Vaswani, Laradji & Lacoste-Julien, `Stochastic Polyak step-size for SGD
<https://arxiv.org/abs/2002.10542>`_, AISTATS 2021.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._chain import chain
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._scale import scale_lr

_VARIANTS = ("sps", "sps+")
# No step when |g|^2 + eps is at most this (optax's threshold, float64 machine epsilon).
_TINY = float(jnp.finfo(jnp.float64).eps)


class ScaleByPolyakState(NamedTuple):
    """State of :func:`scale_by_polyak`: its hyperparameters only."""

    hyperparams: HyperparamState  # f_min, max_learning_rate, eps


def _squared_norm(tree: Any) -> jax.Array:
    """``sum |g|^2`` over every leaf, in at least float32."""
    return _tree.global_norm(tree) ** 2


@transform(ScaleByPolyakState)
def scale_by_polyak(
    f_min: Finite = 0.0,
    max_learning_rate: NonNegative = 1.0,
    eps: NonNegative = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""Multiply the gradient by the (stochastic) Polyak step size; reads the loss from ``value=``.

    .. math::
        \gamma_t = \min\Big(\frac{f(\theta_t) - f^\star}{\lVert g_t \rVert^2 + \epsilon},
        \; \gamma_{\max}\Big), \qquad u_t = \gamma_t\, g_t

    ``update(grads, state, params, value=loss)`` must be given the loss ``f(theta_t)`` whose
    gradient is ``grads``; without it ``update`` raises. ``variant="sps+"`` uses the positive part
    of the gap, ``max(f - f*, 0)`` (Garrigos et al. 2023), so a loss below ``f_min`` gives no step
    instead of a step uphill. When ``|g|^2 + eps`` is at most 2.2e-16 the step is 0, as in optax.
    The norm is taken over every leaf at once, in at least float32.

    Args:
      f_min: ``f*``, a lower bound on (ideally the value of) the minimum of the loss; 0 for a
        model that can interpolate its data.
      max_learning_rate: ``gamma_max`` >= 0, the largest step size.
      eps: ``epsilon`` >= 0, added to the squared norm.
      variant: ``"sps"`` or ``"sps+"``.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum(x**2)
      >>> tx = optix.chain(optix.scale_by_polyak(), optix.scale_lr(1.0))
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> state = tx.init(params)
      >>> value, grad = jax.value_and_grad(f)(params)
      >>> updates, state = tx.update(grad, state, params, value=value)
      >>> [round(x, 5) for x in optix.apply_updates(params, updates).tolist()]  # 14 / 56 = 0.25
      [0.5, 1.0, 1.5]

    Reference: Loizou, Vaswani, Laradji & Lacoste-Julien, `Stochastic Polyak step-size for SGD
    <https://arxiv.org/abs/2002.10542>`_, AISTATS 2021; Garrigos et al., `Function value
    learning <https://arxiv.org/abs/2307.14528>`_, 2023 (SPS+).
    """
    if variant not in _VARIANTS:
        raise ValueError(f"`variant` must be one of {_VARIANTS}, got {variant!r}")
    spec = Hyperparams(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_polyak` params")
        return ScaleByPolyakState(spec.init())

    def update(updates, state, params=None, *, value=None, **extra):
        del params, extra
        if value is None:
            raise ValueError(
                "`scale_by_polyak` needs the loss: call `update(grads, state, params, "
                "value=loss)` with the loss whose gradient is `grads`"
            )
        _validate.check_float_leaves(updates, "`scale_by_polyak` updates")
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"`value` must be a scalar loss, got shape {value.shape}")
        h, hyperparams = spec.step(state.hyperparams)
        denom = _squared_norm(updates).astype(h.eps.dtype) + h.eps
        gap = value.astype(denom.dtype) - h.f_min
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        usable = denom > _TINY
        step = jnp.where(
            usable, jnp.minimum(gap / jnp.where(usable, denom, 1), h.max_learning_rate), 0
        )
        return multiply(updates, step), ScaleByPolyakState(hyperparams)

    return GradientTransformation(init, update)


@checked
def polyak_sgd(
    max_learning_rate: NonNegative = 1.0,
    scaling: NonNegative = 1.0,
    f_min: Finite = 0.0,
    eps: NonNegative = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""SGD with the Polyak step size; ``update`` needs the loss as ``value=``.

    .. math::
        \theta_t = \theta_{t-1} - s \min\Big(\frac{f(\theta_{t-1}) - f^\star}
        {\lVert g_t \rVert^2 + \epsilon}, \; \gamma_{\max}\Big) g_t

    ``chain(scale_by_polyak(f_min, max_learning_rate, eps, variant), scale_lr(scaling))``:
    ``scaling`` ``s`` is a learning-rate multiplier (a number or a schedule; in the state it is
    the chain's ``learning_rate``), applied outside the step size as in the formula. optax 0.2.8
    applies it to the gradient *before* the step size, so its step is
    ``s min(gap / (s^2 |g|^2 + eps), gamma_max) g``; the two agree when ``s = 1``.

    Args:
      max_learning_rate: ``gamma_max`` >= 0.
      scaling: ``s`` >= 0, or a schedule.
      f_min: ``f*``, the minimum value of the loss (or a lower bound on it).
      eps: ``epsilon`` >= 0.
      variant: ``"sps"`` or ``"sps+"`` (see :func:`scale_by_polyak`).

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> f = lambda x: jnp.sum(x**2)
      >>> tx = optix.polyak_sgd()
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...     value, grad = jax.value_and_grad(f)(params)
      ...     updates, state = tx.update(grad, state, params, value=value)
      ...     params = optix.apply_updates(params, updates)
      >>> round(float(f(params)), 5)  # the loss falls 4x per step: 14 / 4**5
      0.01367

    Reference: Loizou, Vaswani, Laradji & Lacoste-Julien, `Stochastic Polyak step-size for SGD
    <https://arxiv.org/abs/2002.10542>`_, AISTATS 2021.
    """
    return chain(scale_by_polyak(f_min, max_learning_rate, eps, variant), scale_lr(scaling))
