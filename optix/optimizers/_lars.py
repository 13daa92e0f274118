r"""LARS: SGD with momentum whose step per layer is set by a trust ratio of norms.

Reference: You, Gitman & Ginsburg, `Large batch training of convolutional networks
<https://arxiv.org/abs/1708.03888>`_, 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optix._base import GradientTransformation
from optix._base import Params
from optix._chain import chain
from optix.optimizers._sgd import scale_by_momentum
from optix.toolkit import Beta
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr
from optix.transforms._trust_ratio import scale_by_trust_ratio
from optix.wrappers._masked import masked

Mask = Any | Callable[[Params], Any] | None


@checked
def lars(
    learning_rate: NonNegative,
    weight_decay: NonNegative = 0.0,
    weight_decay_mask: Mask = None,
    trust_coefficient: NonNegative = 0.001,
    eps: NonNegative = 0.0,
    trust_ratio_mask: Mask = None,
    momentum: Beta = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: SGD with momentum whose step per layer is set by a trust ratio of norms.

    .. math::
        d_t = g_t + \beta \theta_{t-1}, \quad
        s_t = \eta_t \, c \frac{\lVert \theta_{t-1} \rVert}{\lVert d_t \rVert + \epsilon}
        \, d_t, \quad
        v_t = \mu v_{t-1} + s_t, \quad \theta_t = \theta_{t-1} - v_t

    per leaf (``v_1 = s_1``; Nesterov: ``theta_t = theta_{t-1} - (s_t + mu v_t)``). As in the
    paper's Algorithm 1 and ``optax.lars``, the momentum accumulates steps already scaled by the
    learning rate, so the chain is ``add_decayed_weights``, ``scale_by_trust_ratio``, ``scale_lr``,
    then ``scale_by_momentum``. The trust ratio uses ``||g + beta theta||`` (optax's form) where
    the paper writes ``||g|| + beta ||theta||``. A leaf with a zero param or ``d_t`` norm takes the
    untrusted step ``eta d_t``.

    Args:
      learning_rate: global step size ``eta`` >= 0, or a schedule.
      weight_decay: ``beta`` >= 0, added to the gradient (coupled, as in the paper).
      weight_decay_mask: which params decay; default all.
      trust_coefficient: ``c`` >= 0 (0.001 in the paper).
      eps: added to the denominator of the trust ratio.
      trust_ratio_mask: which params get the trust ratio (the others take plain SGD steps);
        default all. Commonly biases and norm scales are excluded.
      momentum: ``mu`` in [0, 1).
      nesterov: use Nesterov momentum.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
      >>> only_w = {"w": True, "b": False}
      >>> tx = optix.lars(0.1, weight_decay=1e-4, weight_decay_mask=only_w,
      ...                 trust_ratio_mask=only_w)
      >>> updates, state = tx.update(params, tx.init(params), params)

    Reference: You, Gitman & Ginsburg, `Large batch training of convolutional networks
    <https://arxiv.org/abs/1708.03888>`_, 2017.
    """
    trust = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        trust if trust_ratio_mask is None else masked(trust, trust_ratio_mask),
        scale_lr(learning_rate),
        scale_by_momentum(momentum, nesterov=nesterov),
    )
