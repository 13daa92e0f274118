r"""Stateless reshaping of a direction by a mean or a norm: gradient centralization, division by
the global norm, and scaling by the norm of each param block."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import EmptyState
from optix._base import GradientTransformation
from optix._fusable import mark_elementwise
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import leafwise
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only


def _centralize_leaf(g: jax.Array) -> jax.Array:
    """``g`` minus its mean over every axis but the first (leaves of rank < 2 unchanged)."""
    if g.ndim < 2:
        return g
    gc = _tree.upcast(g)
    return (gc - jnp.mean(gc, axis=tuple(range(1, g.ndim)), keepdims=True)).astype(g.dtype)


def centralize() -> GradientTransformation:
    r"""Gradient centralization: subtract from each row its mean over the remaining axes.

    .. math:: u_{i\cdot} = g_{i\cdot} - \mathrm{mean}(g_{i\cdot})

    for every leaf of rank >= 2, with ``i`` the first axis; scalars and vectors pass through
    unchanged (as in the paper and optax's ``centralize``). Which axis is "first" matters: for a
    ``(in, out)`` dense kernel this centres over the outputs of each input.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.centralize()
      >>> g = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
      >>> tx.update(g, tx.init(g))[0]
      Array([[-1.,  0.,  1.],
             [-1.,  0.,  1.]], dtype=float32)

    Reference: Yong, Huang, Hua & Zhang, `Gradient centralization: a new optimization technique
    for deep neural networks <https://arxiv.org/abs/2004.01461>`_, ECCV 2020.
    """

    def init(params):
        _validate.check_float_leaves(params, "`centralize` params")
        return EmptyState()

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_float_leaves(updates, "`centralize` updates")
        return jax.tree.map(_centralize_leaf, updates), state

    return GradientTransformation(init, update)


class NormalizeByUpdateNormState(NamedTuple):
    """State of :func:`normalize_by_update_norm`: its hyperparameters only."""

    hyperparams: HyperparamState  # scale_factor, eps


@transform(NormalizeByUpdateNormState)
def normalize_by_update_norm(
    scale_factor: Finite = 1.0, eps: NonNegative = 1e-6
) -> GradientTransformation:
    r"""Divide the updates by their global L2 norm: a direction of length ``scale_factor``.

    .. math:: u = \frac{c\, g}{\lVert g \rVert_2 + \epsilon}

    The norm is taken over every leaf at once, in at least float32 (optax's
    ``normalize_by_update_norm``). An all-zero update stays zero even with ``eps = 0`` (optax
    gives NaN there). No sign is flipped: optax's examples use ``scale_factor=-1`` to
    descend; in optix chain :func:`scale_lr` after it instead.

    Args:
      scale_factor: ``c``, the length of the result (finite).
      eps: ``epsilon`` >= 0, keeps an all-zero update finite.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.normalize_by_update_norm(eps=0.0)
      >>> tx.update({"a": jnp.array([3.0, 4.0])}, tx.init({"a": jnp.zeros(2)}))[0]["a"]
      Array([0.6, 0.8], dtype=float32)

    Reference: Hazan, Levy & Shalev-Shwartz, `Beyond convexity: stochastic quasi-convex
    optimization <https://arxiv.org/abs/1507.02030>`_, NeurIPS 2015 (normalized gradient descent).
    """
    spec = Hyperparams(scale_factor=scale_factor, eps=eps)

    def apply(updates, params, h):
        denom = _tree.global_norm(updates) + h.eps
        nonzero = denom > 0  # an all-zero update with eps = 0 stays zero, not 0/0
        factor = jnp.where(nonzero, h.scale_factor / jnp.where(nonzero, denom, 1), 0)
        return multiply(updates, factor)

    # The global norm ignores leaf boundaries, so it is the same on packed buffers.
    tx = hyperparams_only("normalize_by_update_norm", NormalizeByUpdateNormState, spec, apply)
    return mark_elementwise(tx)


class ScaleByParamBlockNormState(NamedTuple):
    """State of :func:`scale_by_param_block_norm`: its hyperparameters only."""

    hyperparams: HyperparamState  # min_scale


@transform(ScaleByParamBlockNormState)
def scale_by_param_block_norm(min_scale: NonNegative = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by the L2 norm of its params, floored at ``min_scale``.

    .. math:: u = g \, \max\big(\lVert \theta \rVert_2, \epsilon\big)

    A *block* is one leaf (a weight vector or matrix); its norm is the Frobenius norm of all its
    elements, as in optax's ``scale_by_param_block_norm``. Chained before :func:`scale_lr` it
    makes the learning rate relative to each block's size; :func:`scale_by_param_block_rms` is the
    same with the root mean square.

    Args:
      min_scale: ``epsilon`` >= 0, the smallest factor (keeps zero-initialised blocks moving).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_param_block_norm()
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> tx.update({"w": jnp.ones(2)}, tx.init(params), params)[0]["w"]
      Array([5., 5.], dtype=float32)

    Reference: Shazeer & Stern, `Adafactor: adaptive learning rates with sublinear memory cost
    <https://arxiv.org/abs/1804.04235>`_, ICML 2018, section 8 (relative step size).
    """
    spec = Hyperparams(min_scale=min_scale)

    def apply(updates, params, h):
        def block_norm(g, p):
            return g * jnp.maximum(jnp.sqrt(jnp.sum(_tree.abs_sq(_tree.upcast(p)))), h.min_scale)

        return _tree.map_leaves(
            lambda u, p: leafwise(lambda g: block_norm(g, p), u), updates, params
        )

    return hyperparams_only(
        "scale_by_param_block_norm", ScaleByParamBlockNormState, spec, apply, needs_params=True
    )
