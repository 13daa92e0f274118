"""Adan: adaptive Nesterov momentum from gradient differences, without a look-ahead gradient."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._fusable import mark_elementwise
from optix._hyperparams import Hyperparams, HyperparamState, register_rules


class ScaleByAdanState(NamedTuple):
    """State of :func:`scale_by_adan`: three moments and the previous gradient."""

    hyperparams: HyperparamState  # b1, b2, b3, eps, eps_root; count is t
    mu: Updates  # m: EMA of gradients (decay b1)
    delta: Updates  # v: EMA of gradient differences g_t - g_{t-1} (decay b2)
    nu: Updates  # n: EMA of |g_t + b2 (g_t - g_{t-1})|^2 (decay b3)
    prev_grad: Updates  # g_{t-1}


def scale_by_adan(
    b1: ScalarOrSchedule = 0.98,
    b2: ScalarOrSchedule = 0.92,
    b3: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
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

    Reference: Xie et al., "Adan: adaptive Nesterov momentum algorithm for faster optimizing
    deep models", IEEE TPAMI 2024 (arXiv:2208.06677), Algorithm 1.
    """
    for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
        _validate.check_unit_interval(name, value)
    _validate.check_nonnegative("eps", eps)
    _validate.check_nonnegative("eps_root", eps_root)
    spec = Hyperparams(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_adan` params")
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        delta = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, real=True, name="nu_dtype")
        return ScaleByAdanState(spec.init(), mu, delta, nu, _tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_adan")
        first = state.hyperparams.count == 0
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_, b3_ = hp["b1"], hp["b2"], hp["b3"]
        # Bias corrections as factors, each divided out once per step: a multiply per element
        # where dividing every element would cost a division each.
        c1 = 1 / _tree.bias_correction(b1_, hyperparams.count)
        c2 = b2_ / _tree.bias_correction(b2_, hyperparams.count)
        c3 = 1 / _tree.bias_correction(b3_, hyperparams.count)

        def leaf(g, m, v, n, g_prev):
            gc = _tree.upcast(g)
            d = jnp.where(first, 0, gc - g_prev)
            m_new = b1_ * m + (1 - b1_) * gc
            v_new = b2_ * v + (1 - b2_) * d
            n_new = b3_ * n + (1 - b3_) * _tree.abs_sq(gc + b2_ * d)
            denom = jnp.sqrt(n_new * c3 + hp["eps_root"]) + hp["eps"]
            u = (m_new * c1 + v_new * c2) / denom
            moments = m_new.astype(m.dtype), v_new.astype(v.dtype), n_new.astype(n.dtype)
            return (u.astype(g.dtype), *moments, g.astype(g_prev.dtype))

        trees = (updates, state.mu, state.delta, state.nu, state.prev_grad)
        updates, mu, delta, nu, prev = _tree.map_leaves(leaf, *trees, n_out=5)
        return updates, ScaleByAdanState(hyperparams, mu, delta, nu, prev)

    return mark_elementwise(GradientTransformation(init, update))


register_rules(ScaleByAdanState, b3=_validate.check_unit_interval)
