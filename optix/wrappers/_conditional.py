r"""Run a transform only at some steps: pass the updates through (``conditionally_transform``)
or zero them (``conditionally_mask``) at the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import increment

ConditionFn = Callable[..., ArrayLike]
"""``should_transform_fn(step, **extra) -> bool scalar``; ``step`` is the int32 number of earlier
calls to ``update``."""


class ConditionallyTransformState(NamedTuple):
    """State of :func:`conditionally_transform`: the inner state and the call counter."""

    inner_state: OptState  # untouched at the steps the condition is false
    step: jax.Array  # int32 number of calls to update so far


class ConditionallyMaskState(NamedTuple):
    """State of :func:`conditionally_mask`: the call counter and the inner state."""

    step: jax.Array  # int32 number of calls to update so far
    inner_state: OptState  # untouched at the steps the condition is false


def _condition(fn: ConditionFn, step: jax.Array, extra: dict, forward: bool) -> jax.Array:
    flag = jnp.asarray(fn(step, **extra) if forward else fn(step))
    if flag.shape != ():
        raise ValueError(
            f"`should_transform_fn` must return a scalar bool, got an array of shape {flag.shape}"
        )
    return flag.astype(jnp.bool_)


def _conditional(
    name: str,
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool,
    otherwise: Callable[[Any], Any],
    make_state: Callable[[OptState, jax.Array], Any],
) -> GradientTransformation:
    check_transform(inner, "`inner`")
    if not callable(should_transform_fn):
        raise TypeError(
            f"`should_transform_fn` must be callable (step -> bool), got {should_transform_fn!r}"
        )
    call_inner = caller(inner)

    def init(params):
        return make_state(inner.init(params), jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra):
        _validate.check_float_leaves(updates, f"`{name}` updates")
        flag = _condition(should_transform_fn, state.step, extra, forward_extra_args)

        def run():
            out, inner_state = call_inner(updates, state.inner_state, params, extra)
            return _tree.cast_tree(out, updates), inner_state

        def hold():  # run's updates have the incoming structure and dtypes
            return otherwise(updates), state.inner_state

        out, inner_state = jax.lax.cond(flag, run, hold)
        return out, make_state(inner_state, increment(state.step))

    return GradientTransformation(init, update)


def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    r"""Run ``inner`` only at the steps where ``should_transform_fn(step)`` is true; at the
    others pass the updates through unchanged and keep ``inner``'s state as it was.

    .. math:: (u_t, s_t) = \begin{cases} \mathrm{inner}(g_t, s_{t-1}) & c(t) \\
        (g_t, s_{t-1}) & \text{otherwise} \end{cases}

    ``step`` counts the calls to ``update`` before this one (0 at the first), whether or not
    ``inner`` ran, as in optax's ``conditionally_transform``. ``inner`` runs under
    ``jax.lax.cond``, so its work is only done at the steps it is used. Its updates are cast to the
    incoming dtypes (the two branches must agree).

    Args:
      inner: the transform to run at some steps.
      should_transform_fn: ``step -> bool scalar`` (traceable: use ``jnp`` comparisons).
      forward_extra_args: also pass ``update``'s keyword arguments (``value=``, ...) to
        ``should_transform_fn``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> clip_late = optix.conditionally_transform(optix.clip(1.0), lambda step: step >= 1)
      >>> state = clip_late.init(jnp.zeros(2))
      >>> u, state = clip_late.update(jnp.array([3.0, -0.5]), state)  # step 0: unchanged
      >>> clip_late.update(jnp.array([3.0, -0.5]), state)[0]  # step 1: clipped
      Array([ 1. , -0.5], dtype=float32)

    Reference: `optax.conditionally_transform
    <https://optax.readthedocs.io/en/latest/api/transformations.html>`_.
    """
    return _conditional(
        "conditionally_transform",
        inner,
        should_transform_fn,
        forward_extra_args,
        lambda updates: updates,
        ConditionallyTransformState,
    )


def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    r"""Run ``inner`` only at the steps where ``should_transform_fn(step)`` is true; at the
    others emit zero updates and keep ``inner``'s state as it was.

    .. math:: (u_t, s_t) = \begin{cases} \mathrm{inner}(g_t, s_{t-1}) & c(t) \\
        (0, s_{t-1}) & \text{otherwise} \end{cases}

    As :func:`conditionally_transform`, except that the params stay where they are at the steps
    the condition is false (optax's ``conditionally_mask``). For a fixed period,
    :func:`accumulate` averages the skipped gradients instead of dropping them.

    Args:
      inner: the transform (typically a whole optimizer) to run at some steps.
      should_transform_fn: ``step -> bool scalar``; ``step`` counts earlier calls to ``update``.
      forward_extra_args: also pass ``update``'s keyword arguments to ``should_transform_fn``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.conditionally_mask(optix.sgd(0.1), lambda step: step % 2 == 0)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.ones(2), state)  # step 0: an SGD step
      >>> tx.update(jnp.ones(2), state)[0]  # step 1: no step
      Array([0., 0.], dtype=float32)

    Reference: `optax.conditionally_mask
    <https://optax.readthedocs.io/en/latest/api/transformations.html>`_.
    """
    return _conditional(
        "conditionally_mask",
        inner,
        should_transform_fn,
        forward_extra_args,
        lambda updates: jax.tree.map(jnp.zeros_like, updates),
        lambda inner_state, step: ConditionallyMaskState(step, inner_state),
    )
