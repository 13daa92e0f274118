r"""The Kronecker factors of PSGD Kron: their initial values, one fitting step on the Lie group of
triangular matrices, their rebalancing, and the preconditioner ``Q^T Q`` they make, each for one
array of any rank (a factor per axis).

Reference: Xi-Lin Li, `Preconditioned stochastic gradient descent
<https://arxiv.org/abs/1512.04202>`_, IEEE TNNLS 2018; the Kron variant of the author's
psgd_torch, as written in the ``kron`` of Evan Walters' psgd_jax
(https://github.com/evanatyourservice/psgd_jax, ``psgd_jax/kron.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.typing import DTypeLike


def init_factors(
    shape: tuple[int, ...],
    q0: float,
    dtype: DTypeLike,
    max_size_triangular: int,
    min_ndim_triangular: int,
) -> tuple[jax.Array, ...]:
    """``Q_0 = q0^{1/k} I`` for an array of ``shape`` (``k`` axes): one factor per axis, an
    ``(n, n)`` identity or, for an axis of size 1, longer than ``max_size_triangular`` or of an
    array with fewer than ``min_ndim_triangular`` axes, a diagonal kept as an ``(n,)`` vector; a
    scalar has one scalar factor."""
    if not shape:
        return (jnp.full((), q0, dtype),)
    scale = q0 ** (1 / len(shape))
    diag = [n == 1 or n > max_size_triangular or len(shape) < min_ndim_triangular for n in shape]
    return tuple(
        jnp.full((n,), scale, dtype) if d else scale * jnp.eye(n, dtype=dtype)
        for n, d in zip(shape, diag, strict=True)
    )


def _along(
    x: jax.Array, axis: int, fn: Callable[[jax.Array, jax.Array], jax.Array], q: jax.Array
) -> jax.Array:
    """``fn(q, X)`` on ``x`` unfolded along ``axis`` (an ``(n, rest)`` matrix ``X``), folded
    back."""
    moved = jnp.moveaxis(x, axis, 0)
    out = fn(q, moved.reshape(moved.shape[0], -1)).reshape(moved.shape)
    return jnp.moveaxis(out, 0, axis)


def _times(q: jax.Array, m: jax.Array) -> jax.Array:
    return q @ m


def _inverse_transpose_times(q: jax.Array, m: jax.Array) -> jax.Array:
    """``Q^{-T} m`` for an upper-triangular ``Q``, by a triangular solve."""
    return solve_triangular(q, m, trans="T", lower=False)


def _gram_times(q: jax.Array, m: jax.Array) -> jax.Array:
    return q.T @ (q @ m)


def _scale_axis(x: jax.Array, axis: int, d: jax.Array) -> jax.Array:
    """``x`` times the diagonal ``d`` along ``axis``."""
    shape = [1] * x.ndim
    shape[axis] = d.shape[0]
    return x * d.reshape(shape)


def _gram(x: jax.Array, axis: int, diagonal: bool) -> jax.Array:
    """The contraction of ``x`` with itself over every axis but ``axis``: ``X_(i) X_(i)^T`` of
    the mode-``i`` unfolding, or just its diagonal."""
    m = jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    if diagonal:
        return jnp.sum(m * m, axis=1)
    return m @ m.T


def _spectral_norm_lower_bound(s: jax.Array) -> jax.Array:
    r"""A cheap lower bound on the spectral norm of a symmetric PSD matrix ``S``, as psgd uses
    it: with ``r`` the row of ``S`` of largest norm, ``\|S x\|`` for ``x = S r / \|S r\|`` (one
    step of power iteration from ``r``); ``S`` is scaled by ``max|S|`` first, for range."""
    big = jnp.max(jnp.abs(s))
    safe = jnp.where(big > 0, big, 1)
    a = s / safe
    r = a[jnp.argmax(jnp.sum(a * a, axis=1))]
    x = a @ r
    nx = jnp.linalg.norm(x)
    x = x / jnp.where(nx > 0, nx, 1)
    return jnp.where(big > 0, big * jnp.linalg.norm(a @ x), 0)


def _tiny(x: jax.Array) -> jax.Array:
    return x + jnp.finfo(x.dtype).tiny


def balance(factors: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """The factors rescaled to the geometric mean of their max-abs values (``Q`` unchanged)."""
    if len(factors) < 2:
        return factors
    norms = jnp.stack([jnp.max(jnp.abs(q)) for q in factors])
    gmean = jnp.prod(norms) ** (1 / len(factors))
    return tuple(q * (gmean / n) for q, n in zip(factors, norms, strict=True))


def fit(
    factors: tuple[jax.Array, ...], g: jax.Array, v: jax.Array, lr: jax.Array
) -> tuple[jax.Array, ...]:
    r"""One PSGD step of the factors towards whitening ``g``, probed by ``v``: with ``A = Q g``
    and ``B = Q^{-T} v``, ``Q_i -= lr / \|A_(i) A_(i)^T + B_(i) B_(i)^T\| \,
    \mathrm{triu}(A_(i) A_(i)^T - B_(i) B_(i)^T) Q_i`` (see
    :func:`optix.scale_by_psgd_kron`)."""
    if g.ndim == 0:
        (q,) = factors
        a, b = q * g, v / q
        aa, bb = a * a, b * b
        return (q - lr * (aa - bb) * q / _tiny(jnp.abs(aa + bb)),)
    a, b = g, v
    for i, q in enumerate(factors):
        if q.ndim == 1:
            a, b = _scale_axis(a, i, q), _scale_axis(b, i, 1 / q)
        else:
            a = _along(a, i, _times, q)
            b = _along(b, i, _inverse_transpose_times, q)
    new = []
    for i, q in enumerate(factors):
        diagonal = q.ndim == 1
        aa, bb = _gram(a, i, diagonal), _gram(b, i, diagonal)
        if diagonal:
            new.append(q - lr * (aa - bb) * q / _tiny(jnp.max(jnp.abs(aa + bb))))
        else:
            step = jnp.triu(aa - bb) / _tiny(_spectral_norm_lower_bound(aa + bb))
            new.append(q - lr * step @ q)
    return tuple(new)


def precondition(factors: tuple[jax.Array, ...], g: jax.Array) -> jax.Array:
    """``Q^T Q g``, each factor along its axis."""
    if g.ndim == 0:
        (q,) = factors
        return q * q * g
    u = g
    for i, q in enumerate(factors):
        if q.ndim == 1:
            u = _scale_axis(u, i, q * q)
        else:
            u = _along(u, i, _gram_times, q)
    return u


def trust_region(u: jax.Array, scale: float | None) -> jax.Array:
    """psgd_jax's trust region ``s (0.1 sign(x) log(1 + |x|) + 0.9 tanh(x))``, ``x = u / s``;
    ``u`` itself when ``scale`` is None."""
    if scale is None:
        return u
    x = u / scale
    return scale * (0.1 * jnp.sign(x) * jnp.log1p(jnp.abs(x)) + 0.9 * jnp.tanh(x))
