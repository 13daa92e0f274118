r"""RMSprop: steps divided by a running RMS of the gradients, optionally centered, with momentum.

Reference: Tieleman & Hinton, "Lecture 6.5: RMSprop", COURSERA: Neural networks for machine
learning, 2012; Graves, `Generating sequences with recurrent neural networks
<https://arxiv.org/abs/1308.0850>`_, 2013 (centered).
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
from optix.optimizers._sgd import scale_by_momentum
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import is_off
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: running means of g^2 and (if centered) of g."""

    hyperparams: HyperparamState  # decay, eps
    nu: Updates  # running mean of |g|^2
    mu: Updates | None  # running mean of g (centered only; None otherwise)


@transform(ScaleByRmsState)
def scale_by_rms(
    decay: Beta = 0.9,
    eps: NonNegative = 1e-8,
    *,
    centered: bool = False,
    eps_in_sqrt: bool = False,
    initial_scale: ArrayLike = 0.0,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Divide updates by the root of a running mean of squared gradients (RMSprop).

    .. math::
        \nu_t = \rho \nu_{t-1} + (1-\rho) |g_t|^2, \qquad
        u_t = g_t / (\sqrt{\nu_t} + \epsilon)

    Centered, ``nu_t`` is replaced by the variance estimate ``nu_t - |m_t|^2`` with
    ``m_t = rho m_{t-1} + (1 - rho) g_t``. The default puts ``eps`` outside the root, as
    torch.optim.RMSprop does; ``eps_in_sqrt=True`` gives optax's ``g / sqrt(nu + eps)``.

    Args:
      decay: ``rho`` in [0, 1).
      eps: added to the denominator for stability.
      centered: divide by the root of the variance instead of the raw second moment.
      eps_in_sqrt: put ``eps`` inside the square root (optax's default) instead of outside.
      initial_scale: initial value of ``nu`` (torch uses 0, optax's default is 0 too).
      nu_dtype: dtype of the moments; default: the param's real dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_rms(0.99), optix.scale_lr(1e-3))

    Reference: Tieleman & Hinton, "Lecture 6.5: RMSprop", 2012; Graves, `Generating sequences
    with recurrent neural networks <https://arxiv.org/abs/1308.0850>`_, 2013 (centered).
    """
    _validate.check_nonnegative("initial_scale", initial_scale)

    def init(params):
        nu = _tree.moments_like(params, nu_dtype, real=True, fill=initial_scale, name="nu_dtype")
        mu = _tree.moments_like(params, nu_dtype, name="nu_dtype") if centered else None
        return nu, mu

    def rule(h):
        rho, eps = h.decay, h.eps

        def denom(var):
            return (
                _tree.sqrt_flat_at_zero(var + eps)
                if eps_in_sqrt
                else _tree.sqrt_flat_at_zero(var) + eps
            )

        def rms(g, nu):
            nu = rho * nu + (1 - rho) * _tree.abs_sq(g)
            return g / denom(nu), nu

        def centered_rms(g, nu, mu):
            nu = rho * nu + (1 - rho) * _tree.abs_sq(g)
            mu = rho * mu + (1 - rho) * g
            return g / denom(nu - _tree.abs_sq(mu)), nu, mu

        return centered_rms if centered else rms

    spec = Hyperparams(decay=decay, eps=eps)
    return per_leaf("scale_by_rms", ScaleByRmsState, spec, init=init, rule=rule)


@checked
def rmsprop(
    learning_rate: NonNegative,
    decay: Beta = 0.9,
    eps: NonNegative = 1e-8,
    centered: bool = False,
    momentum: Beta = 0.0,
    *,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    r"""RMSprop: divide by a running RMS of gradients, optionally centered and with momentum.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
        b_t = \mu b_{t-1} + g_t / (\sqrt{v_t} + \epsilon), \quad
        \theta_t = \theta_{t-1} - \eta b_t

    ``chain(scale_by_rms, scale_by_momentum, scale_lr)``, in torch.optim.RMSprop's conventions:
    ``eps`` outside the root, momentum applied to the normalised gradient, centered variant
    ``v_t - m_t^2``. Note torch's default decay is 0.99; optix keeps optax's 0.9.
    ``eps_in_sqrt=True`` gives optax's ``g / sqrt(v + eps)``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      decay: ``rho`` in [0, 1).
      eps: added to the denominator.
      centered: normalise by the estimated variance instead of the raw second moment.
      momentum: ``mu`` in [0, 1); 0 builds no momentum buffer.
      eps_in_sqrt: put ``eps`` inside the root.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.rmsprop(1e-3, decay=0.99, centered=True, momentum=0.9)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Tieleman & Hinton, "Lecture 6.5: RMSprop", 2012; Graves, `Generating sequences
    with recurrent neural networks <https://arxiv.org/abs/1308.0850>`_, 2013 (centered).
    """
    parts = [scale_by_rms(decay, eps, centered=centered, eps_in_sqrt=eps_in_sqrt)]
    if not is_off(momentum):
        parts.append(scale_by_momentum(momentum))
    return chain(*parts, scale_lr(learning_rate))
