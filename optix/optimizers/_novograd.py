r"""NovoGrad: momentum on gradients normalised by a layer-wise second moment.

Reference: Ginsburg et al., `Stochastic gradient methods with layer-wise adaptive moments for
training of deep networks <https://arxiv.org/abs/1905.11286>`_, 2019.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
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
from optix.toolkit import transform
from optix.transforms._scale import scale_lr


class ScaleByNovogradState(NamedTuple):
    """State of :func:`scale_by_novograd`: the first moment and one second moment per leaf."""

    hyperparams: HyperparamState  # b1, b2, eps, eps_root, weight_decay; count is t
    mu: Updates  # first moment, shaped like the params
    nu: Updates  # one scalar per leaf: running mean of ||g||^2


@transform(ScaleByNovogradState)
def scale_by_novograd(
    b1: Beta = 0.9,
    b2: Beta = 0.25,
    eps: NonNegative = 1e-8,
    eps_root: NonNegative = 0.0,
    weight_decay: NonNegative = 0.0,
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

    Reference: Ginsburg et al., `Stochastic gradient methods with layer-wise adaptive moments for
    training of deep networks <https://arxiv.org/abs/1905.11286>`_, 2019 (Algorithm 1).
    """
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
        h, hyperparams = spec.step(state.hyperparams)
        b1, b2, eps, eps_root, wd = h.b1, h.b2, h.eps, h.eps_root, h.weight_decay
        coef = jnp.where(h.t == 1, 1, 1 - b2)  # v_1 = ||g_1||^2 exactly (v_0 = 0)

        # the params enter the per-leaf math without being state, which leafwise does not map
        def novograd(g, p, m, v):
            gc = _tree.upcast(g)
            v_new = b2 * v + coef * jnp.sum(_tree.abs_sq(gc))
            m_new = b1 * m + gc / (jnp.sqrt(v_new + eps_root) + eps) + wd * _tree.upcast(p)
            return m_new.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        trees = (updates, params, state.mu, state.nu)
        updates, mu, nu = _tree.map_leaves(novograd, *trees, n_out=3)
        return updates, ScaleByNovogradState(hyperparams, mu, nu)

    return GradientTransformation(init, update)


@checked
def novograd(
    learning_rate: NonNegative,
    b1: Beta = 0.9,
    b2: Beta = 0.25,
    eps: NonNegative = 1e-6,
    eps_root: NonNegative = 0.0,
    weight_decay: NonNegative = 0.0,
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

    Reference: Ginsburg et al., `Stochastic gradient methods with layer-wise adaptive moments for
    training of deep networks <https://arxiv.org/abs/1905.11286>`_, 2019.
    """
    return chain(
        scale_by_novograd(
            b1, b2, eps, eps_root, weight_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype
        ),
        scale_lr(learning_rate),
    )
