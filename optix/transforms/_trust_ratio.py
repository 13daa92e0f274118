"""Layer-wise trust ratios: rescale each leaf by the ratio of its param norm to its update norm."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _tree
from optix._base import GradientTransformation
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import multiply
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only


def leaf_norm(x: jax.Array) -> jax.Array:
    """The L2 (Frobenius) norm of one leaf, in at least float32, with a zero derivative at 0.

    Computed as ``s ||x / s||`` with ``s = max |x|``, so a leaf whose entries square past the
    float range (``|x| >= 2e19`` in float32) still has a finite norm when the norm itself fits.
    """
    xc = _tree.upcast(x)
    scale = jnp.max(jnp.abs(xc), initial=0)
    positive = scale > 0
    finite = jnp.isfinite(scale)  # an infinite entry: the norm is inf (NaN if there is a NaN)
    safe = jnp.where(positive & finite, scale, 1)
    total = jnp.sum(
        _tree.abs_sq(xc / safe.astype(xc.dtype))
    )  # >= 1 when positive (the largest entry gives 1)
    norm = safe * jnp.sqrt(jnp.where(positive, total, 1))
    return jnp.where(positive | jnp.isnan(scale), jnp.where(finite, norm, scale), 0)


def trust_ratio(
    update: jax.Array,
    param: jax.Array,
    min_norm: ArrayLike,
    trust_coefficient: ArrayLike,
    eps: ArrayLike,
) -> jax.Array:
    """``c * max(||p||, m) / (max(||u||, m) + eps)`` for one leaf, and 1 where either norm is 0.

    The ratio is 1 (the update passes unchanged) when the param norm or the update norm is zero
    after the ``min_norm`` floor: optax's convention, which keeps zero-initialised leaves (biases)
    trainable and zero updates zero.
    """
    p_norm = jnp.maximum(leaf_norm(param), min_norm)
    u_norm = jnp.maximum(leaf_norm(update), min_norm)
    zero = (p_norm == 0) | (u_norm == 0)
    denom = jnp.where(zero, 1, u_norm + eps)
    return jnp.where(zero, 1, trust_coefficient * p_norm / denom)


class ScaleByTrustRatioState(NamedTuple):
    """State of :func:`scale_by_trust_ratio`: its hyperparameters only."""

    hyperparams: HyperparamState  # min_norm, trust_coefficient, eps


@transform(ScaleByTrustRatioState)
def scale_by_trust_ratio(
    min_norm: NonNegative = 0.0,
    trust_coefficient: NonNegative = 1.0,
    eps: NonNegative = 0.0,
) -> GradientTransformation:
    r"""Rescale each leaf by its trust ratio, the ratio of its param norm to its update norm.

    .. math::
        r = c \, \frac{\max(\lVert \theta \rVert, m)}{\max(\lVert u \rVert, m) + \epsilon},
        \qquad u' = \begin{cases} u & \text{either norm is } 0 \\ r\, u & \text{otherwise}
        \end{cases}

    Norms are Frobenius norms of whole leaves (a layer's weight matrix, its bias vector), in at
    least float32. A leaf whose param norm or update norm is zero (after the ``min_norm`` floor)
    passes unchanged, as in optax. The building block of :func:`optix.lars`,
    :func:`optix.lamb` and :func:`optix.fromage`.

    Args:
      min_norm: ``m`` >= 0, a floor for both norms (0: no floor).
      trust_coefficient: ``c`` >= 0, multiplies the ratio (0.001 in LARS).
      eps: ``epsilon`` >= 0, added to the update norm in the denominator.

    Returns:
      A transform with state :class:`ScaleByTrustRatioState`; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_trust_ratio()
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> tx.update({"w": jnp.array([0.0, 0.5])}, tx.init(params), params)[0]["w"]
      Array([0., 5.], dtype=float32)

    Reference: You, Gitman & Ginsburg, `Large batch training of convolutional networks
    <https://arxiv.org/abs/1708.03888>`_, 2017.
    """
    spec = Hyperparams(min_norm=min_norm, trust_coefficient=trust_coefficient, eps=eps)

    def apply(updates, params, h):
        def leaf(u, p):
            r = trust_ratio(u, p, h.min_norm, h.trust_coefficient, h.eps)
            return multiply(u, r)

        return _tree.map_leaves(leaf, updates, params)

    return hyperparams_only(
        "scale_by_trust_ratio", ScaleByTrustRatioState, spec, apply, needs_params=True
    )
