r"""Orthogonalisers of matrix stacks: Newton-Schulz with any coefficient schedule, Polar Express,
and the resolution of a Muon-family ``orthogonalize=`` argument (a name or a callable).

Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
<https://kellerjordan.github.io/posts/muon/>`_, 2024; Amsel, Persson, Musco & Gower, `The Polar
Express: optimal matrix sign methods and their application to the Muon algorithm
<https://arxiv.org/abs/2505.16932>`_, 2025.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix.transforms._matrix import transpose

# Jordan's quintic coefficients (a, b, c), chosen to maximise the slope at zero; also the defaults
# of torch.optim.Muon and optax.contrib.muon.
NS_COEFFS = (3.4445, -4.7750, 2.0315)

Coeffs = tuple[float, float, float] | Sequence[tuple[float, float, float]]


def coeff_steps(coeffs: Coeffs, steps: int) -> list[tuple[float, float, float]]:
    """One ``(a, b, c)`` per step: a single triple repeated, or a list of ``steps`` triples."""
    _validate.check_int("ns_steps", steps, 1)
    flat: list[Any] = list(coeffs)
    if len(flat) == 3 and all(isinstance(c, int | float) for c in flat):
        a, b, c = (float(x) for x in flat)
        return [(a, b, c)] * steps
    triples = [tuple(float(x) for x in t) for t in flat]
    if len(triples) != steps or any(len(t) != 3 for t in triples):
        raise ValueError(
            f"`ns_coeffs` must be one (a, b, c) triple or {steps} of them (one per step), "
            f"got {coeffs!r}"
        )
    return triples  # type: ignore[return-value]


# Polar Express (Amsel, Persson, Musco & Gower 2025, Algorithm 1): the degree-5 polynomials
# p_t(x) = a x + b x^3 + c x^5 that are optimal in the sup norm at each step for singular values
# in [1e-3, 1], as published (before the safety scaling). From the eighth step on, the optimal
# polynomial is numerically (15 x - 10 x^3 + 3 x^5) / 8, so that last triple repeats.
POLAR_EXPRESS_COEFFS = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
# Section 4.4's safety factor: the input is divided by 1.01 ||X||_F, and each polynomial but the
# last is evaluated at x / 1.01 (a / 1.01, b / 1.01^3, c / 1.01^5), so round-off that pushes a
# singular value slightly above 1 is still mapped back towards 1.
POLAR_EXPRESS_SAFETY = 1.01


def polar_express_coeffs(steps: int) -> list[tuple[float, float, float]]:
    r"""The ``steps`` Polar Express triples ``(a, b, c)``, with the paper's safety scaling.

    Step ``t <= 7`` uses the ``t``-th published triple divided by ``(1.01, 1.01^3, 1.01^5)``;
    later steps repeat the unscaled ``(1.875, -1.25, 0.375)``, as Algorithm 1 of Amsel et al.,
    `The Polar Express <https://arxiv.org/abs/2505.16932>`_, 2025, does.
    """
    _validate.check_int("ns_steps", steps, 1)
    s = POLAR_EXPRESS_SAFETY
    *head, last = POLAR_EXPRESS_COEFFS
    scaled = [(a / s, b / s**3, c / s**5) for a, b, c in head]
    return (scaled + [last] * steps)[:steps]


NS_PRECONDITIONINGS = ("frobenius", "aol", "schatten")


def newton_schulz(
    x: jax.Array,
    steps: int = 5,
    coeffs: Coeffs = NS_COEFFS,
    eps: float | jax.Array = 1e-7,
    *,
    eps_mode: Literal["clamp", "add"] = "clamp",
    norm_scale: float = 1.0,
    preconditioning: Literal["frobenius", "aol", "schatten"] = "frobenius",
) -> jax.Array:
    r"""Approximately orthogonalise a matrix: ``x = U S V^H -> U S' V^H`` with ``S'`` near 1.

    .. math::
        X_0 = \frac{X}{\max(\nu \|X\|_F, \epsilon)}, \qquad
        A_k = X_k X_k^H, \qquad X_{k+1} = a_k X_k + (b_k A_k + c_k A_k^2) X_k

    run on the wide orientation (``x`` is transposed when it has more rows than columns, which
    leaves the result unchanged since the iteration commutes with transposition). Dividing by the
    Frobenius norm bounds the spectral norm by 1. Jordan's quintic coefficients push every
    singular value into roughly [0.7, 1.2] in five steps rather than converging to exactly 1;
    Polar Express's schedule (:func:`polar_express_coeffs` with ``norm_scale=1.01``) converges.
    For a complex ``x``, ``X^H`` is the conjugate transpose (``X^T`` for a real one) and the
    result is ``U S' V^H``; a matrix with no elements comes back as it is.

    ``preconditioning`` replaces the Frobenius normalisation (optax.contrib.muon's options of the
    same names, after Boissin et al.'s Turbo-Muon, 2025): ``"aol"`` scales row ``i`` of ``X`` by
    ``d_i^{-1/2}`` with ``d_i = \sum_j |(X X^H)_{ij}|`` (the "almost orthogonal layer" rescaling;
    by Schur's test the result has spectral norm <= 1, and it is often much closer to 1 than after
    a Frobenius normalisation); ``"schatten"`` divides ``X`` by its Schatten-4 norm
    ``\|X X^H\|_F^{1/2}``. Both reuse the Gram matrix ``X X^H`` in the first step, so they cost no
    extra product; ``eps`` then guards the row sums ``d_i`` or ``\|X X^H\|_F``. ``norm_scale``
    applies to ``"frobenius"`` only.

    A stack of matrices (``x`` of shape ``(count, rows, cols)``) is orthogonalised matrix by
    matrix, each with its own norm.

    Args:
      x: a 2-D real or complex array, or a 3-D stack of them; math runs in its dtype (upcast it
        first for low precision).
      steps: number of iterations.
      coeffs: one ``(a, b, c)`` triple for every step, or a list of ``steps`` triples.
      eps: guards the normalisation of an all-zero ``x``.
      eps_mode: ``"clamp"`` divides by ``max(nu ||x||, eps)`` (torch.optim.Muon, Jordan's code);
        ``"add"`` divides by ``nu ||x|| + eps`` (optax.contrib.muon, Polar Express's code).
      norm_scale: ``nu`` >= 1, the safety factor on the norm (1.01 for Polar Express).
      preconditioning: ``"frobenius"`` (default), ``"aol"`` or ``"schatten"`` (see above).

    Reference: Jordan et al., `Muon: an optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024; Amsel et al., `The Polar Express
    <https://arxiv.org/abs/2505.16932>`_, 2025.
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"`newton_schulz` needs a 2-D array or a stack of them, got {x.shape}")
    if preconditioning not in NS_PRECONDITIONINGS:
        raise ValueError(
            f"`preconditioning` must be one of {NS_PRECONDITIONINGS}, got {preconditioning!r}"
        )
    triples = coeff_steps(coeffs, steps)
    x = _tree.unsplit(x)  # whole matrices when ZeRO splits the state over explicit mesh axes
    if x.size == 0:
        return x
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = transpose(x)

    def guard(v):
        return jnp.maximum(v, eps) if eps_mode == "clamp" else v + eps

    gram = None
    if preconditioning == "frobenius":
        norm = jnp.sqrt(jnp.sum(_tree.abs_sq(x), axis=(-2, -1), keepdims=True))
        x = x / guard(norm_scale * norm).astype(x.dtype)
    else:
        gram = x @ jnp.conj(transpose(x))
        if preconditioning == "aol":
            d = jax.lax.rsqrt(guard(jnp.sum(jnp.abs(gram), axis=-1)))[..., :, None]
            x, gram = x * d, gram * d * transpose(d)
        else:
            ss = jnp.sqrt(jnp.sum(_tree.abs_sq(gram), axis=(-2, -1), keepdims=True))
            d = jax.lax.rsqrt(guard(ss))
            x, gram = x * d, gram * (d * d)
    for a, b, c in triples:
        if gram is None:
            gram = x @ jnp.conj(transpose(x))  # X X^H (jnp.conj is the identity on real arrays)
        x = a * x + (b * gram + c * (gram @ gram)) @ x
        gram = None
    return transpose(x) if tall else x


def polar_express(
    x: jax.Array,
    steps: int = 5,
    eps: float | jax.Array = 1e-7,
    *,
    eps_mode: Literal["clamp", "add"] = "clamp",
) -> jax.Array:
    r"""Polar Express: :func:`newton_schulz` with the per-step optimal coefficients.

    .. math::
        X_0 = \frac{X}{\max(1.01\,\|X\|_F, \epsilon)}, \qquad
        X_{k+1} = a_k X_k + (b_k A_k + c_k A_k^2) X_k, \quad A_k = X_k X_k^H

    with ``(a_k, b_k, c_k)`` from :func:`polar_express_coeffs` (Algorithm 1 of Amsel, Persson,
    Musco & Gower, `The Polar Express <https://arxiv.org/abs/2505.16932>`_, 2025: the degree-5
    schedule for ``l = 1e-3``, safety factor 1.01). Unlike Jordan's fixed coefficients, it
    converges to the polar factor ``U V^H``.
    """
    return newton_schulz(
        x,
        steps,
        polar_express_coeffs(steps),
        eps,
        eps_mode=eps_mode,
        norm_scale=POLAR_EXPRESS_SAFETY,
    )


Orthogonalize = str | Callable[[jax.Array], jax.Array]
ORTHOGONALIZERS = ("newton_schulz", "polar_express", "aol", "schatten")


def orthogonalizer(
    orthogonalize: Orthogonalize,
    ns_steps: int = 5,
    ns_coeffs: Coeffs = NS_COEFFS,
    eps_mode: Literal["clamp", "add"] = "clamp",
) -> Callable[[jax.Array, Any], jax.Array]:
    r"""The orthogonaliser ``(stack, eps) -> stack`` that ``orthogonalize`` names.

    ``"newton_schulz"``, ``"aol"`` and ``"schatten"`` run ``ns_steps`` Newton-Schulz steps of
    ``ns_coeffs`` (Frobenius normalisation, or optax's AOL / Schatten-4 preconditioning);
    ``"polar_express"`` runs ``ns_steps`` steps of the Polar Express schedule
    (:func:`polar_express_coeffs`); a callable maps the stack
    ``(count, fan_in, fan_out)`` to an array of the same shape and is checked for it when traced.

    Reference: Amsel et al., `The Polar Express <https://arxiv.org/abs/2505.16932>`_, 2025.
    """
    if callable(orthogonalize):
        fn = orthogonalize

        def user(x, eps):
            del eps
            out = fn(x)
            shape = getattr(out, "shape", None)
            if shape is None or tuple(shape) != tuple(x.shape):
                raise ValueError(
                    f"`orthogonalize`: the callable {fn!r} must return an array shaped like its "
                    f"input stack {tuple(x.shape)} (count, fan_in, fan_out), got "
                    f"{shape if shape is None else tuple(shape)}"
                )
            return out

        return user
    if not isinstance(orthogonalize, str) or orthogonalize not in ORTHOGONALIZERS:
        raise ValueError(
            f"`orthogonalize` must be one of {ORTHOGONALIZERS} or a callable "
            f"(stack (count, fan_in, fan_out) -> same shape), got {orthogonalize!r}"
        )
    coeff_steps(ns_coeffs, ns_steps)  # checks both
    if orthogonalize == "polar_express":
        if coeff_steps(ns_coeffs, ns_steps) != coeff_steps(NS_COEFFS, ns_steps):
            raise ValueError(
                "`ns_coeffs` applies to Newton-Schulz; `orthogonalize='polar_express'` uses the "
                "paper's schedule: leave `ns_coeffs` at its default (or pass that schedule as "
                "`ns_coeffs` with orthogonalize='newton_schulz')"
            )
        return lambda x, eps: polar_express(x, ns_steps, eps, eps_mode=eps_mode)
    pre: Literal["frobenius", "aol", "schatten"] = (
        "aol"
        if orthogonalize == "aol"
        else "schatten"
        if orthogonalize == "schatten"
        else "frobenius"
    )
    return lambda x, eps: newton_schulz(
        x, ns_steps, ns_coeffs, eps, eps_mode=eps_mode, preconditioning=pre
    )
