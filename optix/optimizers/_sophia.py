r"""Sophia: momentum over a clipped diagonal-Hessian preconditioner, and Hutchinson's estimator.

The Hessian diagonal comes from a separate gradient transformation, called every
``update_interval`` steps with the gradient, the params and every keyword given to ``update``:
its "updates" are the estimate. :func:`hutchinson_hessian_diag` (the default) needs the objective
as ``obj_fn=``; any transform works in its place, for example
``optix.stateless(lambda g, p: jax.tree.map(lambda x: x * x, g))`` (squared gradients, an
empirical-Fisher stand-in that needs no extra argument).

Reference: Liu, Li, Hall, Liang & Ma, `Sophia: a scalable stochastic second-order optimizer for
language model pre-training <https://arxiv.org/abs/2305.14342>`_, ICLR 2024.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._base import Updates
from optix._chain import caller
from optix._chain import chain
from optix._chain import check_transform
from optix.toolkit import Beta
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import PositiveOrNone
from optix.toolkit import arguments_for
from optix.toolkit import checked
from optix.toolkit import leafwise
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


class HutchinsonState(NamedTuple):
    """State of :func:`hutchinson_hessian_diag`: the raw PRNG key for the next draw."""

    key: jax.Array


def hutchinson_hessian_diag(seed: Any = 0) -> GradientTransformation:
    r"""Hutchinson's unbiased estimate of the Hessian diagonal of ``obj_fn`` at the params.

    .. math:: \hat h = u \odot \nabla^2 f(x)\, u, \qquad u_i = \pm 1 \text{ (Rademacher)},
        \qquad \mathbb{E}[\hat h] = \mathrm{diag}\, \nabla^2 f(x)

    computed with one Hessian-vector product (forward over reverse mode). Exact when the
    Hessian is diagonal. ``update(grads, state, params, obj_fn=f)`` returns the estimate; ``f``
    takes the params and returns the scalar loss (close over the batch). A fresh ``u`` is drawn
    at every call from the key in the state (split once per call, folded with the leaf index).

    Args:
      seed: an int or a PRNG key.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> f = lambda p: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * p**2)
      >>> est = optix.hutchinson_hessian_diag(seed=0)
      >>> params = jnp.ones(3)
      >>> est.update(params, est.init(params), params, obj_fn=f)[0]
      Array([2., 4., 6.], dtype=float32)

    Reference: Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", 1990; Bekas, Kokiopoulou & Saad, `An estimator for the diagonal
    of a matrix <https://doi.org/10.1016/j.apnum.2007.01.003>`_, 2007.
    """
    key0 = _validate.raw_key(seed)

    def init(params):
        _validate.check_float_leaves(params, "`hutchinson_hessian_diag` params")
        return HutchinsonState(jnp.copy(key0))  # its own buffer: donation deletes it

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "hutchinson_hessian_diag")
        obj_fn = extra.get("obj_fn")
        if not callable(obj_fn):
            raise ValueError(
                "`hutchinson_hessian_diag` needs the objective: call `update(grads, state, "
                "params, obj_fn=f)` with `f(params) -> loss` (close over the batch)"
            )
        key, draw = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        signs = [
            jax.random.rademacher(jax.random.fold_in(draw, i), jnp.shape(p), jnp.float32).astype(
                p.dtype
            )
            for i, p in enumerate(leaves)
        ]
        u = treedef.unflatten(signs)
        hvp = jax.jvp(jax.grad(obj_fn), (params,), (u,))[1]
        # the estimate is u * Hu, cast to the gradient's dtype: one output from three trees that
        # are not state, which leafwise does not map
        estimate = _tree.map_leaves(
            lambda h, s, g: (_tree.upcast(h) * _tree.upcast(s)).astype(g.dtype), hvp, u, updates
        )
        return estimate, HutchinsonState(key)

    return GradientTransformation(init, update)


class ScaleBySophiaState(NamedTuple):
    """State of :func:`scale_by_sophia`: momentum, the Hessian-diagonal EMA, the estimator's."""

    hyperparams: HyperparamState  # b1, b2, eps, gamma, clip_threshold; count is t
    mu: Updates  # EMA of gradients
    nu: Updates  # EMA of the Hessian-diagonal estimates (refreshed every update_interval steps)
    estimator: OptState  # the state of hessian_diagonal_fn


@transform(ScaleBySophiaState)
def scale_by_sophia(
    b1: Beta = 0.965,
    b2: Beta = 0.99,
    eps: NonNegative = 1e-8,
    gamma: NonNegative = 0.01,
    clip_threshold: PositiveOrNone = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    *,
    seed: ArrayLike = 0,
    bias_correction: bool = True,
    refresh_first: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Sophia's direction: momentum over ``max(gamma h, eps)``, clipped elementwise.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u_t = \mathrm{clip}\Bigl(\frac{m_t / (1-\beta_1^t)}{\max(\gamma h, \epsilon)},
        -\rho, \rho\Bigr), \quad
        h \leftarrow \beta_2 h + (1-\beta_2) \hat h \;\text{ every } k \text{ steps}

    with ``rho = clip_threshold`` (``None``: no clipping), ``k = update_interval`` and ``hat h``
    from ``hessian_diagonal_fn`` (default :func:`hutchinson_hessian_diag` with ``seed``, which
    needs ``obj_fn=`` in ``update``). The defaults follow ``optax.contrib.scale_by_sophia``
    (itself after levanter): the estimate refreshed at steps ``0, k, 2k, ...`` enters ``h``
    *after* that step's direction is formed (so the first ``k`` steps see ``h = 0`` and are
    sign steps), and ``m_t`` is bias-corrected. The paper's Algorithm 3 refreshes ``h`` first
    and uses ``m_t`` as is: ``refresh_first=True, bias_correction=False``.

    Example:
      >>> import jax, optix
      >>> squares = optix.stateless(lambda g, p: jax.tree.map(lambda x: x * x, g))
      >>> tx = optix.chain(optix.scale_by_sophia(hessian_diagonal_fn=squares), optix.scale_lr(1e-3))

    Reference: Liu, Li, Hall, Liang & Ma, `Sophia: a scalable stochastic second-order optimizer
    for language model pre-training <https://arxiv.org/abs/2305.14342>`_, ICLR 2024.
    """
    _validate.check_int("update_interval", update_interval, minimum=1)
    specs: dict[str, Any] = {"b1": b1, "b2": b2, "eps": eps, "gamma": gamma}
    if clip_threshold is not None:
        specs["clip_threshold"] = clip_threshold
    spec = Hyperparams(**specs)
    estimator = hessian_diagonal_fn or hutchinson_hessian_diag(seed)
    check_transform(estimator, "`hessian_diagonal_fn`")
    call_estimator = caller(estimator)

    def init(params):
        _validate.check_float_leaves(params, "`scale_by_sophia` params")
        _validate.check_real_leaves(params, "scale_by_sophia", "it clips real ratios")
        mu = _tree.moments_like(params, mu_dtype, name="mu_dtype")
        nu = _tree.moments_like(params, nu_dtype, name="nu_dtype")
        return ScaleBySophiaState(spec.init(), mu, nu, estimator.init(params))

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "scale_by_sophia")
        _validate.check_updates(updates, state.mu, "scale_by_sophia")
        _validate.check_matches_params(updates, params)
        h, hyperparams = spec.step(state.hyperparams)
        b1, b2, eps, gamma = h.b1, h.b2, h.eps, h.gamma
        rho = h.clip_threshold if clip_threshold is not None else None
        refresh = (h.t - 1) % update_interval == 0  # at steps 0, k, 2k, ... counted from 0

        def refreshed(est_state, nu):
            estimate, est_state = call_estimator(updates, est_state, params, extra)
            # an EMA of nu itself (not of updates), cast back to nu's dtype
            nu = _tree.map_leaves(
                lambda v, e: (b2 * v + (1 - b2) * _tree.upcast(e)).astype(v.dtype), nu, estimate
            )
            return est_state, nu

        def kept(est_state, nu):
            return est_state, nu

        est_state, nu = state.estimator, state.nu
        if refresh_first:
            est_state, nu = jax.lax.cond(refresh, refreshed, kept, est_state, nu)
        # the bias correction divided out once per step: a multiply per element
        c1 = 1 / _tree.bias_correction(b1, h.t) if bias_correction else None

        def sophia(g, m, v):
            m = b1 * m + (1 - b1) * g
            m_hat = m * c1 if bias_correction else m
            u = m_hat / jnp.maximum(gamma * v, eps)
            if rho is not None:
                u = jnp.clip(u, -rho, rho)
            return u, m, v  # v is refreshed on its own schedule, not here

        direction, mu, _ = leafwise(sophia, updates, state.mu, nu)
        if not refresh_first:
            est_state, nu = jax.lax.cond(refresh, refreshed, kept, est_state, nu)
        return direction, ScaleBySophiaState(hyperparams, mu, nu, est_state)

    return GradientTransformation(init, update)


@checked
def sophia(
    learning_rate: NonNegative,
    b1: Beta = 0.965,
    b2: Beta = 0.99,
    eps: NonNegative = 1e-8,
    weight_decay: NonNegative = 1e-4,
    mask: Mask = None,
    gamma: NonNegative = 0.01,
    clip_threshold: PositiveOrNone = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    *,
    seed: ArrayLike = 0,
    bias_correction: bool = True,
    refresh_first: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Sophia with decoupled weight decay: ``chain(scale_by_sophia(...),
    add_decayed_weights(weight_decay, mask), scale_lr(learning_rate))``.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\bigl(u_t + \lambda \theta_{t-1}\bigr)

    with ``u_t`` the clipped, preconditioned momentum of :func:`scale_by_sophia`. Matches
    ``optax.contrib.sophia``. With the default Hutchinson estimator, pass the objective at
    every step: ``tx.update(grads, state, params, obj_fn=lambda p: loss_fn(p, batch))``; it is
    evaluated (one Hessian-vector product) only every ``update_interval`` steps. Under data
    parallelism, average the estimate across devices as you average gradients.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      b1: momentum decay; b2: decay of the Hessian-diagonal EMA (per refresh), in [0, 1).
      eps: floor of the preconditioner; gamma: >= 0, its scale.
      weight_decay: decoupled decay ``lambda`` >= 0, multiplied by the learning rate.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      clip_threshold: > 0, the elementwise clip ``rho`` of the direction, or None.
      update_interval: >= 1 steps between Hessian refreshes.
      hessian_diagonal_fn: the estimator (default: Hutchinson's, seeded with ``seed``).
      seed: an int or a PRNG key for the default estimator.
      bias_correction, refresh_first: see :func:`scale_by_sophia` (paper: False, True).
      mu_dtype, nu_dtype: moment dtypes; default the param's, at least float32.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> loss = lambda p: jnp.sum(jnp.array([1.0, 10.0]) * (p - 3.0) ** 2)
      >>> tx = optix.sophia(1e-3)
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
      >>> state[0].nu  # refreshed after the first step: (1 - b2) * diag(H)
      Array([0.02..., 0.2...], dtype=float32)

    Reference: Liu, Li, Hall, Liang & Ma, `Sophia: a scalable stochastic second-order optimizer
    for language model pre-training <https://arxiv.org/abs/2305.14342>`_, ICLR 2024.
    """
    return chain(
        scale_by_sophia(**arguments_for(scale_by_sophia, locals())),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
