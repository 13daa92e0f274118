r"""Adagrad: per-coordinate steps divided by the root of the summed squared gradients.

Reference: Duchi, Hazan & Singer, `Adaptive subgradient methods for online learning and stochastic
optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, JMLR 2011.
"""

from __future__ import annotations

from typing import NamedTuple

from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: the running sum of squared gradients."""

    hyperparams: HyperparamState  # eps
    sum_of_squares: Updates


@transform(ScaleByAdagradState)
def scale_by_adagrad(
    initial_accumulator_value: ArrayLike = 0.0,
    eps: NonNegative = 1e-10,
    *,
    accumulator_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide updates by the root of the sum of all past squared gradients (Adagrad).

    .. math:: s_t = s_{t-1} + |g_t|^2, \qquad u_t = g_t / (\sqrt{s_t} + \epsilon)

    This is torch.optim.Adagrad's convention (``eps`` outside the root, ``s_0 = 0``). optax's
    ``scale_by_rss`` instead computes ``g / sqrt(s + eps)`` with ``s_0 = 0.1``.

    Args:
      initial_accumulator_value: ``s_0`` (>= 0).
      eps: added to the denominator.
      accumulator_dtype: dtype of ``s``; default: the param's real dtype widened to at least
        float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adagrad(), optix.scale_lr(0.1))

    Reference: Duchi, Hazan & Singer, `Adaptive subgradient methods for online learning and
    stochastic optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, JMLR 2011.
    """
    _validate.check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def init(params):
        acc = _tree.moments_like(
            params,
            accumulator_dtype,
            real=True,
            fill=initial_accumulator_value,
            name="accumulator_dtype",
        )
        return (acc,)

    def rule(h):
        eps = h.eps

        def adagrad_(g, s):
            s = s + _tree.abs_sq(g)
            return g / (_tree.sqrt_flat_at_zero(s) + eps), s

        return adagrad_

    spec = Hyperparams(eps=eps)
    return per_leaf("scale_by_adagrad", ScaleByAdagradState, spec, init=init, rule=rule)


@checked
def adagrad(
    learning_rate: NonNegative,
    initial_accumulator_value: ArrayLike = 0.0,
    eps: NonNegative = 1e-10,
) -> GradientTransformation:
    r"""Adagrad: per-coordinate steps shrinking with the root of the summed squared gradients.

    .. math:: s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \eta g_t / (\sqrt{s_t} + \epsilon)

    ``chain(scale_by_adagrad, scale_lr)``, in torch.optim.Adagrad's conventions (``eps`` outside
    the root, ``s_0 = 0`` by default). optax's ``adagrad`` puts ``eps`` inside the root and starts
    from ``s_0 = 0.1``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      initial_accumulator_value: ``s_0`` >= 0.
      eps: added to the denominator.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adagrad(0.1)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Duchi, Hazan & Singer, `Adaptive subgradient methods for online learning and
    stochastic optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, JMLR 2011.
    """
    return chain(scale_by_adagrad(initial_accumulator_value, eps), scale_lr(learning_rate))
