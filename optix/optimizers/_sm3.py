r"""SM3: Adagrad with one accumulator per slice of each tensor instead of one per element.

Reference: Anil, Gupta, Koren & Singer, `Memory-efficient adaptive optimization
<https://arxiv.org/abs/1901.11150>`_, NeurIPS 2019.
"""

from __future__ import annotations

import functools
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


def _expand(acc: jax.Array, axis: int, ndim: int) -> jax.Array:
    """The accumulator of ``axis`` reshaped to broadcast against a rank-``ndim`` leaf."""
    shape = [1] * ndim
    shape[axis] = acc.shape[0]
    return acc.reshape(shape)


def _accumulators(p: jax.Array, dtype: DTypeLike | None) -> tuple[jax.Array, ...]:
    """One accumulator per axis (a vector's is per element); a scalar has one scalar. Real, in
    ``dtype`` or else at least float32."""
    dt = _tree.real_dtype(_tree.state_dtype(p.dtype, dtype))
    if p.ndim == 0:
        return (jnp.zeros([], dt),)
    return tuple(jnp.zeros((n,), dt) for n in p.shape)


class ScaleBySm3State(NamedTuple):
    """State of :func:`scale_by_sm3`: the momentum buffer and the per-axis accumulators."""

    hyperparams: HyperparamState  # momentum, eps
    mu: Updates  # momentum of the preconditioned gradient, shaped like the params
    nu: Updates  # per leaf: a tuple with one accumulator per axis ((): a single scalar)


@transform(ScaleBySm3State)
def scale_by_sm3(
    momentum: Beta = 0.9,
    eps: NonNegative = 1e-8,
    *,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Precondition by SM3-II's accumulators (one per slice of each axis), then add momentum.

    For a leaf of rank ``p >= 1`` the cover is the ``p`` families of slices ``S_{a,j} = {i :
    i_a = j}``, one accumulator ``mu_a`` per axis ``a`` (a vector's cover is its single elements,
    which is diagonal Adagrad); a scalar has one accumulator. With all accumulators 0 at first:

    .. math::
        \nu_t(i) = \min_{a} \mu_{a,t-1}(i_a) + |g_t(i)|^2, \quad
        \mu_{a,t}(j) = \max_{i:\, i_a = j} \nu_t(i), \quad
        m_t = \beta m_{t-1} + (1-\beta) \frac{g_t}{\sqrt{\nu_t + \epsilon}}

    and ``u_t = m_t``, where ``g / sqrt(nu + eps)`` is taken as 0 wherever ``nu_t = 0`` (the
    paper's ``0/0 = 0``). This is optax's ``scale_by_sm3`` (with its default ``b2 = 1``) extended
    to scalar leaves, on which optax 0.2.8 fails. Complex leaves use ``|g|^2``.

    Args:
      momentum: ``beta`` in [0, 1) (0: plain SM3-II).
      eps: >= 0, added to ``nu_t`` inside the root.
      mu_dtype, nu_dtype: dtypes of the momentum and of the accumulators (default: the param's
        dtype widened to at least float32; the accumulators are real for complex params).

    Example:
      >>> import optix
      >>> tx = optix.chain(optix.scale_by_sm3(), optix.scale_lr(0.1))

    Reference: Anil, Gupta, Koren & Singer, `Memory-efficient adaptive optimization
    <https://arxiv.org/abs/1901.11150>`_, NeurIPS 2019 (Algorithm SM3-II).
    """
    _tree.check_state_dtype("mu_dtype", mu_dtype)
    _tree.check_state_dtype("nu_dtype", nu_dtype)
    spec = Hyperparams(momentum=momentum, eps=eps)

    def init(params):
        params = _tree.as_arrays(params)
        _validate.check_float_leaves(params, "`scale_by_sm3` params")
        nu = jax.tree.map(lambda p: _accumulators(p, nu_dtype), _tree.unwrap_variables(params))
        return ScaleBySm3State(
            spec.init(), _tree.moments_like(params, mu_dtype, name="mu_dtype"), nu
        )

    def update(updates, state, params=None, **extra):
        del params, extra
        _validate.check_updates(updates, state.mu, "scale_by_sm3")
        h, hyperparams = spec.step(state.hyperparams)
        beta, eps = h.momentum, h.eps

        # each leaf of nu is a tuple of accumulators (one per axis), which leafwise cannot cast
        # as one leaf, so this leaf function casts for itself
        def sm3(g, m, accs):
            gc = _tree.upcast(g)
            ndim = gc.ndim
            new_accs: tuple[jax.Array, ...]
            if ndim == 0:
                nu = accs[0] + _tree.abs_sq(gc)
                new_accs = (nu,)
            else:
                previous = functools.reduce(
                    jnp.minimum, [_expand(a, axis, ndim) for axis, a in enumerate(accs)]
                )
                nu = previous + _tree.abs_sq(gc)
                # ``initial=0`` changes nothing (nu >= 0) but gives the slices of a leaf with no
                # elements (an axis of length 0) a maximum: 0
                new_accs = tuple(
                    jnp.max(nu, axis=tuple(b for b in range(ndim) if b != axis), initial=0)
                    for axis in range(ndim)
                )
            positive = nu > 0
            inv_root = jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, nu, 1) + eps), 0)
            m_new = beta * m + (1 - beta) * (gc * inv_root)
            accs_out = tuple(n.astype(a.dtype) for n, a in zip(new_accs, accs, strict=True))
            return m_new.astype(g.dtype), m_new.astype(m.dtype), accs_out

        updates, mu, nu = _tree.map_leaves(sm3, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleBySm3State(hyperparams, mu, nu)

    return GradientTransformation(init, update)


@checked
def sm3(
    learning_rate: NonNegative,
    momentum: Beta = 0.9,
    *,
    eps: NonNegative = 1e-8,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""SM3: Adagrad-like steps from one accumulator per slice of each axis (sublinear memory).

    .. math::
        \nu_t(i) = \min_{a} \mu_{a,t-1}(i_a) + g_t(i)^2, \quad
        \mu_{a,t}(j) = \max_{i:\, i_a = j} \nu_t(i), \quad
        m_t = \beta m_{t-1} + (1-\beta) \frac{g_t}{\sqrt{\nu_t + \epsilon}}, \quad
        \theta_t = \theta_{t-1} - \eta \, m_t

    A ``(n, k)`` matrix keeps ``n + k`` accumulators, a vector one per element, a scalar one.
    See :func:`scale_by_sm3`. Matches ``optax.sm3`` wherever optax runs; optax 0.2.8 fails on
    scalar leaves, which optix handles as a single accumulator (Adagrad on that scalar).

    Args:
      learning_rate: step size >= 0, or a schedule (optax takes a constant only).
      momentum: ``beta`` in [0, 1).
      eps: >= 0, inside the root.
      mu_dtype, nu_dtype: dtypes of the momentum and the accumulators.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.sm3(0.1)
      >>> state = tx.init({"w": jnp.ones((4, 5)), "s": jnp.ones(())})
      >>> [a.shape for a in state[0].nu["w"]], [a.shape for a in state[0].nu["s"]]
      ([(4,), (5,)], [()])

    Reference: Anil, Gupta, Koren & Singer, `Memory-efficient adaptive optimization
    <https://arxiv.org/abs/1901.11150>`_, NeurIPS 2019.
    """
    return chain(
        scale_by_sm3(momentum, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_lr(learning_rate),
    )
