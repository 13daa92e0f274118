r"""Lion: the sign of an interpolation between momentum and gradient, with decoupled decay.

Reference: Chen et al., `Symbolic discovery of optimization algorithms
<https://arxiv.org/abs/2302.06675>`_, NeurIPS 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax.numpy as jnp
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
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr


class ScaleByLionState(NamedTuple):
    """State of :func:`scale_by_lion`: the hyperparameters and the momentum."""

    hyperparams: HyperparamState  # b1, b2
    mu: Updates  # EMA of gradients (decay b2)


@transform(ScaleByLionState)
def scale_by_lion(
    b1: Beta = 0.9,
    b2: Beta = 0.99,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""The sign of an interpolation between momentum and gradient (Lion).

    .. math::
        u_t = \mathrm{sign}\big(\beta_1 m_{t-1} + (1-\beta_1) g_t\big), \quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    For complex leaves ``sign(z) = z / |z|``. Matches the paper's Program 1 and optax's
    ``scale_by_lion``.

    Args:
      b1: interpolation weight of the momentum in the step, in [0, 1).
      b2: decay of the momentum, in [0, 1).
      mu_dtype: dtype of the momentum; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_lion(), optix.scale_lr(1e-4))

    Reference: Chen et al., `Symbolic discovery of optimization algorithms
    <https://arxiv.org/abs/2302.06675>`_, NeurIPS 2023.
    """

    def rule(h):
        b1, b2 = h.b1, h.b2

        def lion(g, m):
            return jnp.sign(b1 * m + (1 - b1) * g), b2 * m + (1 - b2) * g

        return lion

    def init(params):
        return (_tree.moments_like(params, mu_dtype, name="mu_dtype"),)

    spec = Hyperparams(b1=b1, b2=b2)
    return per_leaf("scale_by_lion", ScaleByLionState, spec, init=init, rule=rule)


@checked
def lion(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.99,
    weight_decay: NonNegative = 1e-3,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Lion: the sign of an interpolated momentum, with decoupled weight decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta \big(
        \mathrm{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t) + \lambda \theta_{t-1}\big), \quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    Every coordinate moves by ``eta``, so Lion wants a learning rate 3-10x smaller than AdamW's,
    and a weight decay 3-10x larger for the same ``eta * lambda``. The decay is multiplied by the
    learning rate, as in the paper's Program 1 and optax's ``lion`` (whose defaults these are).

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1: weight of the momentum in the step's sign, in [0, 1).
      b2: momentum decay, in [0, 1).
      weight_decay: ``lambda`` >= 0.
      mask: which params decay (see :func:`adamw`).
      mu_dtype: dtype of the momentum (``jnp.bfloat16`` halves Lion's only buffer).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optix.lion(1e-2, weight_decay=0.0)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -0.5])}, tx.init(params), params)
      >>> optix.apply_updates(params, updates)["w"]
      Array([ 0.99, -1.99], dtype=float32)

    Reference: Chen et al., `Symbolic discovery of optimization algorithms
    <https://arxiv.org/abs/2302.06675>`_, NeurIPS 2023.
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
