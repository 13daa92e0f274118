"""NovoGrad: momentum on gradients normalised by a layer-wise second moment."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._hyperparams import Hyperparams, HyperparamState


class ScaleByNovogradState(NamedTuple):
    """State of :func:`scale_by_novograd`: the first moment and one second moment per leaf."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root, weight_decay; count is t
    mu: Updates  # first moment, shaped like the params
    nu: Updates  # one scalar per leaf: running mean of ||g||^2


def scale_by_novograd(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.25,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Normalise each leaf's gradient by a running mean of its squared norm, then add momentum.

    .. math::
        v_1 = \lVert g_1 \rVert^2, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \lVert g_t \rVert^2, \quad
        m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon}
        + \lambda \theta_{t-1}, \quad u_t = m_t

    per leaf (``||.||`` the Frobenius norm of the leaf), with ``m_0 = 0`` and no bias correction,
    as in the paper's algorithm and optax's ``scale_by_novograd``. The weight decay sits inside
    the momentum, so ``update`` always needs ``params``.

    Args:
      b1, b2: decays in [0, 1) of the first moment and of the per-leaf second moment.
      eps: added to ``sqrt(v_t)``; eps_root: added inside the root.
      weight_decay: ``lambda`` >= 0.
      mu_dtype: dtype of the first moment (default: the param's dtype widened to at least float32).
      nu_dtype: dtype of the per-leaf second moments (default: at least float32; one scalar per
        leaf, so precision is free).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_novograd(), optix.scale_lr(1e-2))

    Reference: Ginsburg et al., "Stochastic gradient methods with layer-wise adaptive moments for
    training of deep networks", 2019 (Algorithm 1).
    """
    _validate.check_unit_interval("b1", b1)
    _validate.check_unit_interval("b2", b2)
    _validate.check_nonnegative("eps", eps)
    _validate.check_nonnegative("eps_root", eps_root)
    _validate.check_nonnegative("weight_decay", weight_decay)
    _tree.check_state_dtype("nu_dtype", nu_dtype)
    spec = Hyperparams(b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_novograd` params")
        params = _tree.as_arrays(params)

        def nu_leaf(p):
            dtype = _tree.real_dtype(_tree.state_dtype(p.dtype, nu_dtype))
            return jnp.zeros([], dtype)

        return ScaleByNovogradState(
            spec.init(),
            _tree.moments_like(params, mu_dtype, name="mu_dtype"),
            jax.tree.map(nu_leaf, params),
        )

    def update(updates, state, params=None, **extra):
        del extra
        _validate.check_updates(updates, state.mu, "scale_by_novograd")
        _validate.require_params(params, "scale_by_novograd")
        _validate.check_matches_params(updates, params)
        first = state.hyperparams.count == 0
        hp, hyperparams = spec.step(state.hyperparams)
        b1_, b2_ = hp["b1"], hp["b2"]
        coef = jnp.where(first, 1, 1 - b2_)  # v_1 = ||g_1||^2 exactly (v_0 = 0)

        def leaf(g, p, m, v):
            gc = _tree.upcast(g)
            v_new = b2_ * v + coef * jnp.sum(_tree.abs_sq(gc))
            d = gc / (jnp.sqrt(v_new + hp["eps_root"]) + hp["eps"])
            m_new = b1_ * m + d + hp["weight_decay"] * _tree.upcast(p)
            return m_new.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        trees = (updates, params, state.mu, state.nu)
        updates, mu, nu = _tree.map_leaves(leaf, *trees, n_out=3)
        return updates, ScaleByNovogradState(hyperparams, mu, nu)

    return GradientTransformation(init, update)
