"""Clipping against exploding gradients: per element, and by the global norm."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optix import _tree
from optix._base import GradientTransformation
from optix._fusable import mark_elementwise
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import leafwise
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only


class ClipState(NamedTuple):
    """State of :func:`clip`: its hyperparameters only."""

    hyperparams: HyperparamState  # max_delta


@transform(ClipState)
def clip(max_delta: NonNegative) -> GradientTransformation:
    """Clip each element to ``[-max_delta, max_delta]``.

    For complex leaves the modulus is clipped and the phase kept.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.clip(1.0)
      >>> tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(jnp.zeros(3)))[0]
      Array([-1. ,  0.5,  1. ], dtype=float32)
    """

    def apply(updates, params, h):
        c = h.max_delta

        def clip(g):
            if jnp.iscomplexobj(g):
                mag = jnp.abs(g)
                return jnp.where(mag > c, g * (c / jnp.where(mag > c, mag, 1)), g)
            return jnp.clip(g, -c, c)

        return leafwise(clip, updates)

    return mark_elementwise(
        hyperparams_only("clip", ClipState, Hyperparams(max_delta=max_delta), apply)
    )


class ClipByGlobalNormState(NamedTuple):
    """State of :func:`clip_by_global_norm`: its hyperparameters only."""

    hyperparams: HyperparamState  # max_norm


@transform(ClipByGlobalNormState)
def clip_by_global_norm(max_norm: NonNegative) -> GradientTransformation:
    r"""Rescale all updates together so that their joint L2 norm is at most ``max_norm``.

    .. math:: u = g \cdot \min\big(1, \; c / \lVert g \rVert_2\big)

    The norm is taken over every leaf at once, in at least float32. All-zero gradients come back
    as zeros (never NaN), and the scale is exactly 1 when no clipping is needed.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.clip_by_global_norm(1.0)
      >>> tx.update({"a": jnp.array([3.0, 4.0])}, tx.init({"a": jnp.zeros(2)}))[0]["a"]
      Array([0.6, 0.8], dtype=float32)

    Reference: Pascanu, Mikolov & Bengio, `On the difficulty of training recurrent neural
    networks <https://arxiv.org/abs/1211.5063>`_, ICML 2013.
    """

    def apply(updates, params, h):
        norm = _tree.global_norm(updates)
        clipped = norm > h.max_norm  # false for all-zero gradients, so no 0/0
        factor = jnp.where(clipped, h.max_norm / jnp.where(clipped, norm, 1), 1)
        return multiply(updates, factor)

    spec = Hyperparams(max_norm=max_norm)
    # The global norm ignores leaf boundaries, so it is the same on packed buffers.
    tx = hyperparams_only("clip_by_global_norm", ClipByGlobalNormState, spec, apply)
    return mark_elementwise(tx)
