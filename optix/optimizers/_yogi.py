r"""Yogi: Adam with an additive second-moment update, so the step cannot grow abruptly.

Reference: Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive methods for nonconvex optimization",
NeurIPS 2018.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import Updates
from optix._chain import chain
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import per_leaf
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByYogiState(NamedTuple):
    """State of :func:`scale_by_yogi`: the hyperparameters and the two moment estimates."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root
    mu: Updates  # first moment
    nu: Updates  # additively updated second moment


@transform(ScaleByYogiState)
def scale_by_yogi(
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-3,
    eps_root: NonNegative = 0.0,
    *,
    initial_accumulator_value: ArrayLike = 1e-6,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam with an additive second-moment update that cannot grow the step too fast (Yogi).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - |g_t|^2)\, |g_t|^2, \quad
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}}
        + \epsilon}

    Both moments start at ``initial_accumulator_value`` and both are bias-corrected, as in
    optax's ``scale_by_yogi`` (the paper's Algorithm 2 states the rule without bias correction,
    and its experiments start ``v`` at 1e-6).

    Args:
      b1, b2: moment decays in [0, 1).
      eps: added outside the root (1e-3, the paper's recommendation).
      eps_root: added inside the root.
      initial_accumulator_value: the value both moments start from (>= 0); only read by ``init``.
      mu_dtype, nu_dtype: dtypes of the moments; default: the param's dtype widened to at least float32.

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_yogi(), optix.scale_lr(1e-2))

    Reference: Zaheer et al., "Adaptive methods for nonconvex optimization", NeurIPS 2018.
    """
    _validate.check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def init(params):
        mu = _tree.moments_like(params, mu_dtype, fill=initial_accumulator_value, name="mu_dtype")
        nu = _tree.moments_like(
            params, nu_dtype, real=True, fill=initial_accumulator_value, name="nu_dtype"
        )
        return mu, nu

    def rule(h):
        b1, b2 = h.b1, h.b2
        bc1 = _tree.bias_correction(b1, h.t)
        bc2 = _tree.bias_correction(b2, h.t)
        root_bc2 = jnp.sqrt(bc2)
        step_size, eps_root, eps = root_bc2 / bc1, h.eps_root * bc2, h.eps * root_bc2

        def yogi(g, m, v):
            m = b1 * m + (1 - b1) * g
            # sign(v - |g|^2) from sqrt(v) against |g|, and (1 - b2) |g|^2 as |sqrt(1 - b2) g|^2:
            # neither squares a large gradient on its own, so |g| >= 2e19 gives no inf - inf
            root_v, mag = jnp.sqrt(v), jnp.abs(g)
            sign = jnp.where(root_v > mag, 1, jnp.where(root_v < mag, -1, 0)).astype(v.dtype)
            v = v - sign * _tree.abs_sq(jnp.sqrt(1 - b2) * g)
            # (m / bc1) / (sqrt(v / bc2 + eps_root) + eps) times sqrt(bc2) top and bottom: v is
            # never divided by bc2 (v / bc2 is about |g|^2), and each element divides once
            return step_size * m / (jnp.sqrt(v + eps_root) + eps), m, v

        return yogi

    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return per_leaf("scale_by_yogi", ScaleByYogiState, spec, init=init, rule=rule)


@checked
def yogi(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.999,
    eps: NonNegative = 1e-3,
    *,
    eps_root: NonNegative = 0.0,
    initial_accumulator_value: ArrayLike = 1e-6,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Yogi: Adam with an additive second-moment update, so the step cannot grow abruptly.

    .. math::
        v_t = v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2, \quad
        \theta_t = \theta_{t-1} - \eta \frac{m_t / (1-\beta_1^t)}
        {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    It is ``chain(scale_by_yogi(...), scale_lr(learning_rate))`` (see :func:`scale_by_yogi`):
    both moments start at ``initial_accumulator_value`` and are bias-corrected, as in optax's
    ``yogi``.

    Args:
      learning_rate: step size >= 0, or a schedule (the paper recommends 1e-2).
      b1, b2: moment decays in [0, 1).
      eps: added outside the root (1e-3 in the paper); eps_root: inside it.
      initial_accumulator_value: starting value of both moments.
      mu_dtype, nu_dtype: moment dtypes; default: the param's dtype widened to at least float32.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.yogi(1e-2)
      >>> state = tx.init({"w": jnp.zeros(3)})

    Reference: Zaheer et al., "Adaptive methods for nonconvex optimization", NeurIPS 2018.
    """
    return chain(
        scale_by_yogi(
            b1,
            b2,
            eps,
            eps_root,
            initial_accumulator_value=initial_accumulator_value,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_lr(learning_rate),
    )
