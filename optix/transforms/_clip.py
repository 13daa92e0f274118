"""Clipping against exploding gradients: per element, and by the global norm."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule
from optix._hyperparams import Hyperparams, HyperparamState


class ClipState(NamedTuple):
    hyperparams: HyperparamState  # max_delta


def clip(max_delta: ScalarOrSchedule) -> GradientTransformation:
    """Clip each element to ``[-max_delta, max_delta]``.

    For complex leaves the modulus is clipped and the phase kept.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.clip(1.0)
      >>> tx.update(jnp.array([-3.0, 0.5, 2.0]), tx.init(jnp.zeros(3)))[0]
      Array([-1. ,  0.5,  1. ], dtype=float32)
    """
    _validate.check_nonnegative("max_delta", max_delta)
    spec = Hyperparams(max_delta=max_delta)

    def init(params):
        _validate.check_float_leaves(params, "`clip` params")
        return ClipState(spec.init())

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`clip` updates")
        hp, hyperparams = spec.step(state.hyperparams)
        c = hp["max_delta"]

        def leaf(u):
            uc = _tree.upcast(u)
            if jnp.iscomplexobj(uc):
                mag = jnp.abs(uc)
                out = jnp.where(mag > c, uc * (c / jnp.where(mag > c, mag, 1)), uc)
            else:
                out = jnp.clip(uc, -c, c)
            return out.astype(u.dtype)

        return _tree.map_leaves(leaf, updates), ClipState(hyperparams)

    return GradientTransformation(init, update)


class ClipByGlobalNormState(NamedTuple):
    hyperparams: HyperparamState  # max_norm


def clip_by_global_norm(max_norm: ScalarOrSchedule) -> GradientTransformation:
    """Rescale all updates together so that their joint L2 norm is at most ``max_norm``.

    .. math:: u = g \\cdot \\min\\big(1, \\; c / \\lVert g \\rVert_2\\big)

    The norm is taken over every leaf at once, in at least float32. All-zero gradients come back
    as zeros (never NaN), and the scale is exactly 1 when no clipping is needed.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.clip_by_global_norm(1.0)
      >>> tx.update({"a": jnp.array([3.0, 4.0])}, tx.init({"a": jnp.zeros(2)}))[0]["a"]
      Array([0.6, 0.8], dtype=float32)

    Reference: Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013.
    """
    _validate.check_nonnegative("max_norm", max_norm)
    spec = Hyperparams(max_norm=max_norm)

    def init(params):
        _validate.check_float_leaves(params, "`clip_by_global_norm` params")
        return ClipByGlobalNormState(spec.init())

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`clip_by_global_norm` updates")
        hp, hyperparams = spec.step(state.hyperparams)
        c = hp["max_norm"]
        norm = _tree.global_norm(updates)
        clipped = norm > c  # false for all-zero gradients, so no 0/0
        factor = jnp.where(clipped, c / jnp.where(clipped, norm, 1), 1)
        out = _tree.map_leaves(lambda u: (_tree.upcast(u) * factor).astype(u.dtype), updates)
        return out, ClipByGlobalNormState(hyperparams)

    return GradientTransformation(init, update)
