r"""Adan: adaptive Nesterov momentum from gradient differences, without a look-ahead gradient.

Reference: Xie et al., `Adan: adaptive Nesterov momentum algorithm for faster optimizing deep
models <https://arxiv.org/abs/2208.06677>`_, IEEE TPAMI 2024.
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

Mask = Any | Callable[[Params], Any] | None


class ScaleByAdanState(NamedTuple):
    """State of :func:`scale_by_adan`: three moments and the previous gradient."""

    hyperparams: HyperparamState  # b1, b2, b3, eps, eps_root
    mu: Updates  # m: EMA of gradients (decay b1)
    delta: Updates  # v: EMA of gradient differences g_t - g_{t-1} (decay b2)
    nu: Updates  # n: EMA of |g_t + b2 (g_t - g_{t-1})|^2 (decay b3)
    prev_grad: Updates  # g_{t-1}


@transform(ScaleByAdanState)
def scale_by_adan(
    b1: Beta = 0.98,
    b2: Beta = 0.92,
    b3: Beta = 0.99,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam-like scaling of a Nesterov momentum estimated from gradient differences (Adan).

    With ``d_t = g_t - g_{t-1}`` (``d_1 = 0``):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t, \quad
        n_t = \beta_3 n_{t-1} + (1-\beta_3) |g_t + \beta_2 d_t|^2, \\
        u_t = \frac{m_t / (1-\beta_1^t) + \beta_2\, v_t / (1-\beta_2^t)}
        {\sqrt{n_t / (1-\beta_3^t) + \epsilon_{root}} + \epsilon}

    The betas are decays, as in the authors' code (the paper writes ``1 - beta``: its
    ``beta_2 = 0.08`` is ``b2 = 0.92`` here). The difference term is weighted by ``b2`` -- the
    paper's ``1 - beta_2`` -- in both ``n_t`` and ``u_t``, as in the paper's Algorithm 1 and the
    authors' code. optax 0.2.8's ``scale_by_adan`` weights it by ``1 - b2`` instead (0.08 rather
    than 0.92 at the defaults), which matches the paper only at ``b2 = 0.5``. Bias correction and
    ``d_1 = 0`` follow the authors' code and optax.

    Args:
      b1, b2, b3: decays in [0, 1) of the gradient, difference and squared-term EMAs.
      eps: added outside the root (the authors' code); eps_root: inside it.
      mu_dtype: dtype of ``m`` and ``v``; nu_dtype: of ``n``. Default: the param's. The previous
        gradient is kept in the param's dtype.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_adan(), optix.scale_lr(1e-3))

    Reference: Xie et al., `Adan: adaptive Nesterov momentum algorithm for faster optimizing deep
    models <https://arxiv.org/abs/2208.06677>`_, IEEE TPAMI 2024, Algorithm 1.
    """

    def init(params):
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        delta = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        return mu, delta, nu, _tree.zeros_like(params)

    def rule(h):
        b1, b2, b3, eps, eps_root = h.b1, h.b2, h.b3, h.eps, h.eps_root
        first = h.t == 1
        # Bias corrections as factors, each divided out once per step: a multiply per element
        # where dividing every element would cost a division each.
        c1 = 1 / _tree.bias_correction(b1, h.t)
        c2 = b2 / _tree.bias_correction(b2, h.t)
        c3 = 1 / _tree.bias_correction(b3, h.t)

        def adan(g, m, v, n, g_prev):
            d = jnp.where(first, 0, g - g_prev)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * d
            n = b3 * n + (1 - b3) * _tree.abs_sq(g + b2 * d)
            u = (m * c1 + v * c2) / (_tree.sqrt_flat_at_zero(n * c3 + eps_root) + eps)
            return u, m, v, n, g

        return adan

    spec = Hyperparams(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_adan", ScaleByAdanState, spec, init=init, rule=rule)


@checked
def adan(
    learning_rate: NonNegative,
    b1: Beta = 0.98,
    b2: Beta = 0.92,
    b3: Beta = 0.99,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
    *,
    eps_root: NonNegative = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adan: adaptive Nesterov momentum estimated from gradient differences.

    .. math::
        \theta_t = \theta_{t-1} - \eta \Big(
        \frac{\hat m_t + \beta_2 \hat v_t}{\sqrt{\hat n_t} + \epsilon}
        + \lambda \theta_{t-1}\Big)

    It is ``chain(scale_by_adan(...), add_decayed_weights(weight_decay, mask),
    scale_lr(learning_rate))``; see :func:`scale_by_adan` for the moments. The difference term is
    weighted by ``b2`` as in the paper and the authors' code; optax 0.2.8's ``adan`` weights it by
    ``1 - b2`` (the two agree only at ``b2 = 0.5``). The decay is the decoupled form
    ``theta (1 - eta lambda)`` (the authors' ``no_prox=True``); the paper's proximal form divides
    by ``1 + eta lambda`` instead, which differs at second order in ``eta lambda``.

    Args:
      learning_rate: step size >= 0, or a schedule.
      b1, b2, b3: decays in [0, 1) (0.98, 0.92, 0.99: the paper's 0.02, 0.08, 0.01).
      eps: added outside the root; eps_root: inside it.
      weight_decay: decoupled decay ``lambda`` >= 0 (the authors use 0.02 for ViTs).
      mask: which params decay (see :func:`adamw`).
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.adan(1e-3, weight_decay=0.02)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Xie et al., `Adan: adaptive Nesterov momentum algorithm for faster optimizing deep
    models <https://arxiv.org/abs/2208.06677>`_, IEEE TPAMI 2024.
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
