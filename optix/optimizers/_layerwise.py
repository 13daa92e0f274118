"""Layer-wise adaptive optimizers: LAMB, LARS, NovoGrad and Fromage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.typing import DTypeLike

from optix._base import GradientTransformation, Params, ScalarOrSchedule
from optix._chain import chain
from optix.optimizers._adam import scale_by_adam
from optix.optimizers._sgd import scale_by_momentum
from optix.transforms._fromage import scale_by_fromage
from optix.transforms._novograd import scale_by_novograd
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr
from optix.transforms._trust_ratio import scale_by_trust_ratio
from optix.wrappers._masked import masked

Mask = Any | Callable[[Params], Any] | None


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-6,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""LAMB: the AdamW direction, rescaled per layer to a step proportional to the layer's norm.

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}
        + \lambda \theta_{t-1}, \qquad
        \theta_t = \theta_{t-1} - \eta \, \frac{\lVert \theta_{t-1} \rVert}
        {\lVert r_t \rVert} \, r_t

    with Adam's bias-corrected moments, and norms taken per leaf. A leaf whose param norm or
    ``r_t`` norm is zero takes the plain step ``-eta r_t`` (optax's convention; the paper's
    scaling function ``phi`` is the identity). Matches ``optax.lamb``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, eps, eps_root: Adam's decays and denominators (``eps = 1e-6`` as in the paper).
      weight_decay: ``lambda`` >= 0, decoupled, added before the trust ratio.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      mu_dtype, nu_dtype: moment dtypes.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.lamb(1e-3, weight_decay=0.01)
      >>> params = {"w": jnp.ones((2, 3))}
      >>> updates, state = tx.update({"w": jnp.ones((2, 3))}, tx.init(params), params)

    Reference: You et al., "Large batch optimization for deep learning: training BERT in 76
    minutes", ICLR 2020 (Algorithm 2).
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_lr(learning_rate),
    )


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
    trust_coefficient: ScalarOrSchedule = 0.001,
    eps: ScalarOrSchedule = 0.0,
    trust_ratio_mask: Mask = None,
    momentum: ScalarOrSchedule = 0.9,
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

    Reference: You, Gitman & Ginsburg, "Large batch training of convolutional networks", 2017.
    """
    trust = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        trust if trust_ratio_mask is None else masked(trust, trust_ratio_mask),
        scale_lr(learning_rate),
        scale_by_momentum(momentum, nesterov=nesterov),
    )


def novograd(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.25,
    eps: ScalarOrSchedule = 1e-6,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""NovoGrad: momentum on gradients normalised by a per-layer second moment of their norm.

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \lVert g_t \rVert^2 \;(v_1 = \lVert g_1
        \rVert^2), \quad
        m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon}
        + \lambda \theta_{t-1}, \quad \theta_t = \theta_{t-1} - \eta m_t

    with one scalar ``v`` per leaf (half Adam's memory). See :func:`scale_by_novograd`. Matches
    ``optax.novograd``; ``update`` needs ``params`` (the decay is inside the momentum).

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2: decays (0.9 and 0.25 as in the paper's experiments and optax).
      eps, eps_root: denominators outside and inside the root.
      weight_decay: ``lambda`` >= 0.
      mu_dtype, nu_dtype: moment dtypes.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.novograd(1e-2)
      >>> params = {"w": jnp.ones(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)

    Reference: Ginsburg et al., "Stochastic gradient methods with layer-wise adaptive moments for
    training of deep networks", 2019.
    """
    return chain(
        scale_by_novograd(
            b1, b2, eps, eps_root, weight_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        scale_lr(learning_rate),
    )


def fromage(
    learning_rate: ScalarOrSchedule, min_norm: ScalarOrSchedule = 1e-6
) -> GradientTransformation:
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

    Reference: Bernstein, Vahdat, Yue & Liu, "On the distance between two neural networks and the
    stability of learning", NeurIPS 2020.
    """
    return scale_by_fromage(learning_rate, min_norm)
