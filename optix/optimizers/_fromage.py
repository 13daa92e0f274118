r"""Fromage: steps of a fixed size relative to each layer's weights, with norm-bounding shrinkage.

Reference: Bernstein, Vahdat, Yue & Liu, `On the distance between two neural networks and the
stability of learning <https://arxiv.org/abs/2002.03432>`_, NeurIPS 2020.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optix import _tree
from optix._base import GradientTransformation
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._common import hyperparams_only
from optix.transforms._trust_ratio import trust_ratio


class ScaleByFromageState(NamedTuple):
    """State of :func:`scale_by_fromage`: its hyperparameters only."""

    hyperparams: HyperparamState  # learning_rate, min_norm


@transform(ScaleByFromageState)
def scale_by_fromage(
    learning_rate: NonNegative, min_norm: NonNegative = 1e-6
) -> GradientTransformation:
    r"""The Fromage step: a relative gradient step per leaf, then a shrink by ``sqrt(1 + eta^2)``.

    .. math::
        \theta_{t} = \frac{1}{\sqrt{1+\eta^2}} \Big(\theta_{t-1} - \eta \,
        \frac{\lVert \theta_{t-1} \rVert}{\lVert g_t \rVert} g_t\Big), \qquad
        u_t = \theta_t - \theta_{t-1}

    Norms are per leaf, floored at ``min_norm``. This transform needs the learning rate inside
    (the shrink factor depends on it), so it returns the final step and holds ``learning_rate``
    in its own hyperparameters; do not chain :func:`optix.scale_lr` after it. The shrink term
    ``(1/sqrt(1+eta^2) - 1) theta`` is computed as ``-eta^2 / (r (1 + r)) theta`` with
    ``r = sqrt(1+eta^2)``, which keeps full precision in float32 for small ``eta`` (the direct
    difference loses about three digits at ``eta = 0.01``).

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      min_norm: floor >= 0 for the param and gradient norms.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_fromage(0.01)
      >>> state = tx.init({"w": jnp.ones(3)})

    Reference: Bernstein, Vahdat, Yue & Liu, `On the distance between two neural networks and the
    stability of learning <https://arxiv.org/abs/2002.03432>`_, NeurIPS 2020.
    """
    spec = Hyperparams(learning_rate=learning_rate, min_norm=min_norm)

    def apply(updates, params, h):
        lr, min_norm = h.learning_rate, h.min_norm
        root = jnp.sqrt(1 + lr * lr)
        # 1 - 1/root without the cancellation that costs float32 three digits for small lr
        decay = lr * lr / (root * (1 + root))

        # the params enter the per-leaf math without being state, which leafwise does not map
        def fromage(g, p):
            r = trust_ratio(g, p, min_norm, 1, 0)
            u = -(lr / root * r) * _tree.upcast(g) - decay * _tree.upcast(p)
            return u.astype(g.dtype)

        return _tree.map_leaves(fromage, updates, params)

    return hyperparams_only("scale_by_fromage", ScaleByFromageState, spec, apply, needs_params=True)


@checked
def fromage(learning_rate: NonNegative, min_norm: NonNegative = 1e-6) -> GradientTransformation:
    r"""Fromage: per-layer steps of relative size ``eta``, with a shrink that keeps norms bounded.

    .. math::
        \theta_t = \frac{1}{\sqrt{1+\eta^2}} \Big(\theta_{t-1} - \eta \,
        \frac{\lVert \theta_{t-1} \rVert}{\lVert g_t \rVert} g_t\Big)

    per leaf, with both norms floored at ``min_norm``. The learning rate lives in
    :func:`scale_by_fromage` (the shrink depends on it), still named ``learning_rate``.
    Matches ``optax.fromage``.

    Args:
      learning_rate: ``eta`` >= 0 (0.01 is the paper's default), or a schedule.
      min_norm: floor >= 0 for the norms.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.fromage(0.01)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)

    Reference: Bernstein, Vahdat, Yue & Liu, `On the distance between two neural networks and the
    stability of learning <https://arxiv.org/abs/2002.03432>`_, NeurIPS 2020.
    """
    return scale_by_fromage(learning_rate, min_norm)
