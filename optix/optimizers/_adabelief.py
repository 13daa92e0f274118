r"""AdaBelief: Adam whose denominator tracks the deviation of the gradient from its mean.

Reference: Zhuang et al., `AdaBelief optimizer: adapting stepsizes by the belief in observed
gradients <https://arxiv.org/abs/2010.07468>`_, NeurIPS 2020.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
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
from optix.transforms._scale import scale_lr


class ScaleByAdabeliefState(NamedTuple):
    """State of :func:`scale_by_adabelief`: the mean and the "belief" (centred second moment)."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root
    mu: Updates  # first moment
    nu: Updates  # EMA of |g - m|^2 (+ eps_root each step)


@transform(ScaleByAdabeliefState)
def scale_by_adabelief(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-16,
    eps_root: NonNegative = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Scale by the mean gradient over the root of its EMA squared deviation (AdaBelief).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2) |g_t - m_t|^2 + \epsilon_{root}, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    ``eps_root`` is added to the stored ``s_t`` at every step (the paper's Algorithm 2, and
    optax's ``scale_by_belief``); ``eps`` is added outside the root.

    Args:
      b1, b2: moment decays in [0, 1).
      eps, eps_root: see above (both 1e-16 in the paper and optax).
      nesterov: use ``b1 m_hat_{t+1} + (1 - b1) g_t / (1 - b1^t)`` as the numerator, as optax's
        ``nesterov=True`` does.
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adabelief(), optix.scale_lr(1e-3))

    Reference: Zhuang et al., `AdaBelief optimizer: adapting stepsizes by the belief in observed
    gradients <https://arxiv.org/abs/2010.07468>`_, NeurIPS 2020, Algorithm 2.
    """

    def rule(h):
        b1, b2, eps_root = h.b1, h.b2, h.eps_root
        bc1 = _tree.bias_correction(b1, h.t)
        bc1_next = _tree.bias_correction(b1, h.t + 1)
        # times sqrt(bc2) top and bottom: the corrections are per-step scalars, one division
        root_bc2 = jnp.sqrt(_tree.bias_correction(b2, h.t))
        coef_m = (b1 / bc1_next if nesterov else 1 / bc1) * root_bc2
        coef_g = (1 - b1) / bc1 * root_bc2
        eps = h.eps * root_bc2

        def adabelief(g, m, s):
            m = b1 * m + (1 - b1) * g
            s = b2 * s + (1 - b2) * _tree.abs_sq(g - m) + eps_root
            m_hat = coef_m * m + coef_g * g if nesterov else coef_m * m
            return m_hat / (jnp.sqrt(s) + eps), m, s

        return adabelief

    def init(params):
        return first_and_second_moments(params, mu_dtype, nu_dtype)

    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_adabelief", ScaleByAdabeliefState, spec, init=init, rule=rule)


@checked
def adabelief(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-16,
    eps_root: NonNegative = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdaBelief: Adam whose denominator tracks the deviation of the gradient from its mean.

    .. math::
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \quad
        \theta_t = \theta_{t-1} - \eta \frac{m_t / (1-\beta_1^t)}
        {\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    A gradient close to its running mean ("believed") gets a large step, a surprising one a small
    step. It is ``chain(scale_by_adabelief(...), scale_lr(learning_rate))`` (see
    :func:`scale_by_adabelief`) and matches optax's ``adabelief``.

    Args:
      learning_rate: step size ``eta`` >= 0, or a schedule.
      b1, b2: moment decays in [0, 1).
      eps, eps_root: added outside the root, and to ``s_t`` at every step.
      nesterov: Nesterov form of the numerator (optax's option).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optix.adabelief(1e-2)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -0.5])}, tx.init(params))
      >>> updates["w"]  # first step: m_hat = g, s_hat = (0.9 g)^2, so the step is lr / 0.9
      Array([-0.01111111,  0.01111111], dtype=float32)

    Reference: Zhuang et al., `AdaBelief optimizer: adapting stepsizes by the belief in observed
    gradients <https://arxiv.org/abs/2010.07468>`_, NeurIPS 2020.
    """
    return chain(
        scale_by_adabelief(
            b1, b2, eps, eps_root, nesterov=nesterov, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        scale_lr(learning_rate),
    )
