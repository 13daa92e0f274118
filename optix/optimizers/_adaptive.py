"""Adaptive per-coordinate optimizers: RMSprop, Adagrad, AdaDelta."""

from __future__ import annotations

from jax.typing import ArrayLike

from optix._base import GradientTransformation, ScalarOrSchedule
from optix._chain import chain
from optix.optimizers._sgd import nonzero
from optix.transforms._adaptive import scale_by_adadelta, scale_by_adagrad, scale_by_rms
from optix.transforms._momentum import scale_by_momentum
from optix.transforms._scale import scale_lr


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    centered: bool = False,
    momentum: ScalarOrSchedule = 0.0,
    *,
    eps_in_sqrt: bool = False,
) -> GradientTransformation:
    r"""RMSprop: divide by a running RMS of gradients, optionally centered and with momentum.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
        b_t = \mu b_{t-1} + g_t / (\sqrt{v_t} + \epsilon), \quad
        \theta_t = \theta_{t-1} - \eta b_t

    torch.optim.RMSprop's conventions: ``eps`` outside the root, momentum applied to the
    normalised gradient, centered variant ``v_t - m_t^2``. Note torch's default decay is 0.99;
    optix keeps optax's 0.9. ``eps_in_sqrt=True`` gives optax's ``g / sqrt(v + eps)``.

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

    Reference: Tieleman & Hinton, Lecture 6.5, 2012; Graves, 2013 (centered).
    """
    parts = [scale_by_rms(decay, eps, centered=centered, eps_in_sqrt=eps_in_sqrt)]
    if nonzero(momentum):
        parts.append(scale_by_momentum(momentum))
    return chain(*parts, scale_lr(learning_rate))


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: ArrayLike = 0.0,
    eps: ScalarOrSchedule = 1e-10,
) -> GradientTransformation:
    r"""Adagrad: per-coordinate steps shrinking with the root of the summed squared gradients.

    .. math:: s_t = s_{t-1} + g_t^2, \qquad \theta_t = \theta_{t-1} - \eta g_t / (\sqrt{s_t} + \epsilon)

    torch.optim.Adagrad's conventions (``eps`` outside the root, ``s_0 = 0`` by default). optax's
    ``adagrad`` puts ``eps`` inside the root and starts from ``s_0 = 0.1``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      initial_accumulator_value: ``s_0`` >= 0.
      eps: added to the denominator.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adagrad(0.1)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Duchi, Hazan & Singer, "Adaptive subgradient methods for online learning and
    stochastic optimization", JMLR 2011.
    """
    return chain(scale_by_adagrad(initial_accumulator_value, eps), scale_lr(learning_rate))


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-6,
) -> GradientTransformation:
    r"""AdaDelta: steps sized by the ratio of running RMS of past steps and of gradients.

    .. math::
        \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t,
        \qquad \theta_t = \theta_{t-1} - \eta \Delta_t

    The paper has no learning rate (``eta = 1``, the default); torch.optim.Adadelta adds one, and
    so does optix.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      rho: decay of the running means, in [0, 1).
      eps: added inside both roots.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adadelta()
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Zeiler, "ADADELTA: an adaptive learning rate method", 2012.
    """
    return chain(scale_by_adadelta(rho, eps), scale_lr(learning_rate))
