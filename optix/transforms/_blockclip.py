"""Clipping by blocks: each leaf by its RMS, and each unit by its norm relative to the params (AGC)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _keypath
from optix import _tree
from optix._base import GradientTransformation
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import leafwise
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only

_DIV_EPS = 1e-6  # keeps max_norm / ||g|| finite; cannot engage unless ||g|| < 1e-6 < max_norm


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) derivative at 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


class ClipByBlockRmsState(NamedTuple):
    """State of :func:`clip_by_block_rms`: its hyperparameters only."""

    hyperparams: HyperparamState  # threshold


@transform(ClipByBlockRmsState)
def clip_by_block_rms(threshold: NonNegative) -> GradientTransformation:
    r"""Rescale each leaf so that its root mean square is at most ``threshold``.

    .. math::
        u = g \,/\, \max\big(1, \; \mathrm{rms}(g) / c\big), \qquad
        \mathrm{rms}(g) = \sqrt{\tfrac{1}{n} \textstyle\sum_i |g_i|^2}

    A block is one leaf of the tree (a weight vector, matrix or kernel) with ``n`` elements. The
    RMS is computed in at least float32 (``|g|^2`` for complex leaves); an all-zero leaf comes back
    as zeros, and a leaf already within the threshold is returned unchanged. This is the rule of
    ``optax.clip_by_block_rms``.

    Args:
      threshold: the largest RMS ``c`` >= 0 a leaf may have, or a schedule.

    Returns:
      A transform with state :class:`ClipByBlockRmsState` (``threshold`` in its hyperparams).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.clip_by_block_rms(1.0)
      >>> tx.update({"w": jnp.array([3.0, 4.0])}, tx.init({"w": jnp.zeros(2)}))[0]["w"]
      Array([0.8485..., 1.1313...], dtype=float32)
    """

    def apply(updates, params, h):
        c = h.threshold

        def clip(g):
            rms = _safe_sqrt(jnp.mean(_tree.abs_sq(g)))
            clipped = rms > c  # false for an all-zero leaf, so no 0/0
            return g * jnp.where(clipped, c / jnp.where(clipped, rms, 1), 1)

        return leafwise(clip, updates)

    spec = Hyperparams(threshold=threshold)
    return hyperparams_only("clip_by_block_rms", ClipByBlockRmsState, spec, apply)


def _unit_axes(shape: tuple[int, ...], axis: Any, where: str) -> tuple[int, ...] | None:
    """The axes a unit norm reduces over (``None``: the whole leaf is one unit)."""
    ndim = len(shape)
    if axis is not None:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"`adaptive_grad_clip` axis {a} is out of range for the leaf '{where}' of "
                    f"shape {shape}"
                )
        return tuple(a % ndim for a in axes)
    if sum(d != 1 for d in shape) <= 1:  # scalars and vectors (size-1 dims aside)
        return None
    if ndim in (2, 3):  # dense kernels (in, out) and multi-head ones (in, heads, out)
        return (0,)
    if ndim in (4, 5):  # convolution kernels HWIO and DHWIO
        return tuple(range(ndim - 1))
    raise ValueError(
        f"`adaptive_grad_clip` has no unit convention for the leaf '{where}' of shape {shape} "
        "(rank 0 to 5 are supported); pass `axis=` to say which axes one unit spans"
    )


def _unit_norm(x: jax.Array, axes: tuple[int, ...] | None) -> jax.Array:
    """The L2 norm of each unit of ``x``, broadcast back to ``x``'s shape."""
    squared = jnp.sum(_tree.abs_sq(_tree.upcast(x)), axis=axes, keepdims=True)
    return jnp.broadcast_to(_safe_sqrt(squared), jnp.shape(x))


class AdaptiveGradClipState(NamedTuple):
    """State of :func:`adaptive_grad_clip`: its hyperparameters only."""

    hyperparams: HyperparamState  # clipping, eps


@transform(AdaptiveGradClipState)
def adaptive_grad_clip(
    clipping: NonNegative,
    eps: NonNegative = 1e-3,
    *,
    axis: int | Sequence[int] | None = None,
) -> GradientTransformation:
    r"""Clip each unit's gradient to a fixed ratio of the unit's param norm (AGC, from NFNets).

    .. math::
        m = \lambda \max(\lVert \theta \rVert_u, \epsilon), \qquad
        u = \begin{cases}
          g \, m / \max(\lVert g \rVert_u, 10^{-6}) & \lVert g \rVert_u > m \\
          g & \text{otherwise}
        \end{cases}

    where ``||.||_u`` is the L2 norm of the unit an element belongs to. Units follow the NFNets
    reference code and ``optax.adaptive_grad_clip``: a leaf with at most one dimension of size
    above 1 (a scalar, a bias vector) is one unit; a rank-2 ``(in, out)`` or rank-3
    ``(in, heads, out)`` kernel has one unit per output column (reduce over axis 0); a rank-4 HWIO
    or rank-5 DHWIO convolution kernel has one unit per output channel (reduce over all axes but
    the last). ``axis`` overrides this for every leaf. Norms are computed in at least float32
    (``|x|^2`` for complex leaves); the updates keep the gradient's dtype. ``eps`` keeps
    zero-initialised params (biases) trainable; all-zero gradients come back as zeros.

    Args:
      clipping: ``lambda`` >= 0, the largest allowed ratio of a unit's gradient norm to its param
        norm (0.01 to 0.16 in the paper, smaller for larger batches), or a schedule.
      eps: ``epsilon`` >= 0, the smallest param norm used, or a schedule.
      axis: the axes one unit spans, for all leaves; default: by rank, as above.

    Returns:
      A transform with state :class:`AdaptiveGradClipState` (``clipping`` and ``eps`` in its
      hyperparams). Its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adaptive_grad_clip(0.1)
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> tx.update({"w": jnp.array([6.0, 8.0])}, tx.init(params), params)[0]["w"]
      Array([0.3, 0.4], dtype=float32)

    Reference: Brock, De, Smith & Simonyan, `High-performance large-scale image recognition
    without normalization <https://arxiv.org/abs/2102.06171>`_, ICML 2021.
    """
    if axis is not None:
        axes = (axis,) if not isinstance(axis, Sequence) else tuple(axis)
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise TypeError(f"`axis` must be an int or a sequence of ints, got {axis!r}")

    def unit_axes(tree: Any) -> list[tuple[int, ...] | None]:
        return [
            _unit_axes(jnp.shape(x), axis, _keypath.path_str(path))
            for path, x in jax.tree_util.tree_leaves_with_path(tree)
        ]

    def leaf(g, p, axes, h):
        g_norm = _unit_norm(g, axes)
        max_norm = h.clipping * jnp.maximum(_unit_norm(p, axes), h.eps)
        clipped = g_norm > max_norm
        factor = jnp.where(clipped, max_norm / jnp.maximum(g_norm, _DIV_EPS), 1)
        return (_tree.upcast(g) * factor).astype(g.dtype)

    def apply(updates, params, h):
        axes = iter(unit_axes(updates))
        return _tree.map_leaves(lambda g, p: leaf(g, p, next(axes), h), updates, params)

    spec = Hyperparams(clipping=clipping, eps=eps)
    return hyperparams_only(
        "adaptive_grad_clip",
        AdaptiveGradClipState,
        spec,
        apply,
        needs_params=True,
        check_init=unit_axes,
    )
