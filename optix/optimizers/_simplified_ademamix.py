r"""Simplified AdEMAMix: one accelerated (undamped) momentum plus the gradient, over Adam's root.

Reference: Morwani, Vyas, Kwun, Kakade & Ba, `Connections between schedule-free optimizers,
AdEMAMix, and accelerated SGD variants <https://arxiv.org/abs/2502.02431>`_, 2025.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Params
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import first_and_second_moments
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


class ScaleBySimplifiedAdemamixState(NamedTuple):
    """State of :func:`scale_by_simplified_ademamix`: the momentum and the second moment."""

    hyperparams: HyperparamState  # b1, b2, alpha, eps, eps_root
    mu: Updates  # m_t = b1 m_{t-1} + g_t (a sum, not an average)
    nu: Updates  # EMA of |g|^2


@transform(ScaleBySimplifiedAdemamixState)
def scale_by_simplified_ademamix(
    b1: Beta = 0.99,
    b2: Beta = 0.95,
    alpha: NonNegative = 0.0,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Mix the gradient into an undamped momentum, over Adam's denominator.

    .. math::
        m_t = \beta_1 m_{t-1} + g_t, \quad
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) |g_t|^2, \quad
        u_t = \frac{m_t + \alpha g_t}{\sqrt{\nu_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    The momentum is a geometric *sum* of gradients (no ``1 - beta_1`` factor and no bias
    correction), so its size is about ``1 / (1 - beta_1)`` times the gradient's: scale the
    learning rate accordingly. Matches ``optax.contrib.scale_by_simplified_ademamix``.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_simplified_ademamix(alpha=2.0), optix.scale_lr(1e-4))

    Reference: Morwani, Vyas, Kwun, Kakade & Ba, `Connections between schedule-free optimizers,
    AdEMAMix, and accelerated SGD variants <https://arxiv.org/abs/2502.02431>`_, 2025.
    """

    def rule(h):
        b1, b2, alpha, eps, eps_root = h.b1, h.b2, h.alpha, h.eps, h.eps_root
        # the bias correction divided out once per step: a multiply per element
        c2 = 1 / _tree.bias_correction(b2, h.t)

        def simplified_ademamix(g, m, nu):
            m = b1 * m + g
            nu = b2 * nu + (1 - b2) * _tree.abs_sq(g)
            return (m + alpha * g) / (_tree.sqrt_flat_at_zero(nu * c2 + eps_root) + eps), m, nu

        return simplified_ademamix

    def init(params):
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    spec = Hyperparams(b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root)
    return per_leaf(
        "scale_by_simplified_ademamix", ScaleBySimplifiedAdemamixState, spec, init=init, rule=rule
    )


@checked
def simplified_ademamix(
    learning_rate: NonNegative,
    b1: Beta = 0.99,
    b2: Beta = 0.95,
    alpha: NonNegative = 0.0,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Simplified AdEMAMix: AdEMAMix with one momentum, no warm-ups, decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\Bigl(\frac{m_t + \alpha g_t}
        {\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon} + \lambda \theta_{t-1}\Bigr)

    with ``m_t`` and ``hat nu_t`` as in :func:`scale_by_simplified_ademamix`. It is
    ``chain(scale_by_simplified_ademamix(...), add_decayed_weights(weight_decay, mask),
    scale_lr(learning_rate))`` and matches ``optax.contrib.simplified_ademamix``. With
    ``alpha = 0`` it is Adam with an undamped momentum (rescale ``eta`` by ``1 - b1``).

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      b1: momentum decay in [0, 1); b2: second-moment decay in [0, 1).
      alpha: >= 0, the weight of the current gradient added to the momentum.
      eps, eps_root: added outside and inside the root.
      weight_decay: decoupled decay ``lambda`` >= 0, multiplied by the learning rate.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      mu_dtype, nu_dtype: moment dtypes; default the param's widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.simplified_ademamix(1e-4, alpha=2.0, weight_decay=1e-4)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> params = optix.apply_updates(params, updates)

    Reference: Morwani, Vyas, Kwun, Kakade & Ba, `Connections between schedule-free optimizers,
    AdEMAMix, and accelerated SGD variants <https://arxiv.org/abs/2502.02431>`_, 2025.
    """
    return chain(
        scale_by_simplified_ademamix(
            b1, b2, alpha, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
