r"""Optimistic gradient descent and optimistic Adam: a step extrapolated from the last two
directions, for min-max games.

Reference: Mokhtari, Ozdaglar & Pattathil, `A unified analysis of extra-gradient and optimistic
gradient methods for saddle point problems <https://arxiv.org/abs/1901.08511>`_, AISTATS 2020;
Daskalakis, Ilyas, Syrgkanis & Zeng, `Training GANs with optimism
<https://arxiv.org/abs/1711.00141>`_, ICLR 2018.
"""

from __future__ import annotations

from typing import NamedTuple

from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Updates
from optix._chain import chain
from optix.optimizers._adam import scale_by_adam
from optix.optimizers._nadamw import scale_by_nesterov_adam
from optix.toolkit import Beta
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByOptimisticGradientState(NamedTuple):
    """State of :func:`scale_by_optimistic_gradient`: the hyperparameters and the last input."""

    hyperparams: HyperparamState  # alpha, beta
    previous: Updates  # d_{t-1}, the direction given to the previous update (none before t = 2)


@transform(ScaleByOptimisticGradientState)
def scale_by_optimistic_gradient(
    alpha: Finite = 1.0,
    beta: Finite = 1.0,
    *,
    previous_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""The generalised optimistic direction: the current one plus ``beta`` times its change.

    .. math:: u_t = (\alpha + \beta)\, d_t - \beta\, d_{t-1}, \qquad d_0 = d_1

    ``d_t`` is the incoming update (a gradient, or another transform's direction). On the first
    step there is no ``d_0``, so it is taken equal to ``d_1`` (``u_1 = alpha d_1``), as optax's
    ``scale_by_optimistic_gradient`` does. ``alpha = beta = 1`` is optimistic gradient descent,
    ``2 g_t - g_{t-1}``.

    Args:
      alpha: weight of the current direction (finite).
      beta: weight of the change ``d_t - d_{t-1}`` (finite; negative momentum when positive).
      previous_dtype: dtype of the stored ``d_{t-1}``; default: the param's dtype widened to at
        least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_optimistic_gradient()
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([1.0, 2.0]), state)
      >>> tx.update(jnp.array([3.0, 2.0]), state)[0]  # 2 d_2 - d_1
      Array([5., 2.], dtype=float32)

    Reference: Mokhtari, Ozdaglar & Pattathil, `A unified analysis of extra-gradient and
    optimistic gradient methods for saddle point problems
    <https://arxiv.org/abs/1901.08511>`_, AISTATS 2020.
    """

    def rule(h):
        a, b = h.alpha, h.beta
        first = h.t == 1  # no d_0: take it equal to d_1

        def optimistic(d, prev):
            prev = _tree.where(first, d, prev)
            return (a + b) * d - b * prev, d

        return optimistic

    def init(params):
        return (_tree.moments_like(params, previous_dtype, name="previous_dtype"),)

    spec = Hyperparams(alpha=alpha, beta=beta)
    return per_leaf(
        "scale_by_optimistic_gradient", ScaleByOptimisticGradientState, spec, init=init, rule=rule
    )


@checked
def optimistic_gradient_descent(
    learning_rate: NonNegative,
    alpha: Finite = 1.0,
    beta: Finite = 1.0,
) -> GradientTransformation:
    r"""Optimistic gradient descent (OGD), for smooth min-max games.

    .. math:: \theta_{t} = \theta_{t-1} - \eta \big((\alpha + \beta)\, g_t - \beta\, g_{t-1}\big)

    ``chain(scale_by_optimistic_gradient(alpha, beta), scale_lr(learning_rate))``, as optax's
    ``optimistic_gradient_descent``. It approximates the extra-gradient method with one gradient
    per step and converges in the last iterate on bilinear games, where gradient descent-ascent
    cycles or diverges.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      alpha, beta: see :func:`scale_by_optimistic_gradient`.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> tx = optix.optimistic_gradient_descent(0.3)
      >>> params = jnp.array([1.0, 1.0])  # min over x, max over y of x * y; solution (0, 0)
      >>> state = tx.init(params)
      >>> for _ in range(100):
      ...     x, y = params
      ...     updates, state = tx.update(jnp.array([y, -x]), state)  # descend x, ascend y
      ...     params = optix.apply_updates(params, updates)
      >>> bool(jnp.linalg.norm(params) < 0.01)  # gradient descent-ascent spirals outwards
      True

    Reference: Mokhtari, Ozdaglar & Pattathil, `A unified analysis of extra-gradient and
    optimistic gradient methods for saddle point problems
    <https://arxiv.org/abs/1901.08511>`_, AISTATS 2020.
    """
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_lr(learning_rate))


@checked
def optimistic_adam(
    learning_rate: NonNegative,
    *,
    alpha: Finite = 1.0,
    beta: Finite = 1.0,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    nesterov: bool = True,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Optimistic Adam: the optimistic step applied to Adam's direction.

    .. math:: r_t = \mathrm{adam}_t, \qquad
        \theta_t = \theta_{t-1} - \eta \big((\alpha + \beta)\, r_t - \beta\, r_{t-1}\big)

    ``chain(adam direction, scale_by_optimistic_gradient(alpha, beta), scale_lr(learning_rate))``,
    with optax's ``optimistic_adam_v2`` interface and defaults: the Adam direction is
    :func:`scale_by_nesterov_adam` (optax's ``scale_by_adam(nesterov=True)``), or plain
    :func:`scale_by_adam` with ``nesterov=False``. Every argument after ``learning_rate`` is
    keyword-only, so a call in the style of optax's deprecated ``optimistic_adam(lr, optimism)``
    is refused rather than misread.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      alpha, beta: see :func:`scale_by_optimistic_gradient`.
      b1, b2, eps, eps_root: Adam's, as in :func:`scale_by_adam`.
      nesterov: use Adam with a Nesterov look-ahead (the default, as optax).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.optimistic_adam(1.0, alpha=1e-2, beta=1.0)
      >>> state = tx.init((jnp.zeros([]), jnp.zeros([])))

    Reference: Daskalakis, Ilyas, Syrgkanis & Zeng, `Training GANs with optimism
    <https://arxiv.org/abs/1711.00141>`_, ICLR 2018.
    """
    if nesterov:
        direction = scale_by_nesterov_adam(
            b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        )
    else:
        direction = scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return chain(direction, scale_by_optimistic_gradient(alpha, beta), scale_lr(learning_rate))
