r"""Matrix building blocks shared by the matrix optimizers (Shampoo, SOAP, Muon): full-precision
products, the cut of a leaf into stacked blocks, inverse roots of symmetric PSD statistics, the
Newton-Schulz orthogonalisation, and the decay their aliases chain.

Reference: Gupta, Koren & Singer, `Shampoo: preconditioned stochastic tensor optimization
<https://arxiv.org/abs/1802.09568>`_, ICML 2018; Anil et al., `Scalable second order optimization
for deep learning <https://arxiv.org/abs/2002.09018>`_, 2020 (blocking); Jordan et al., `Muon: an
optimizer for hidden layers in neural networks <https://kellerjordan.github.io/posts/muon/>`_,
2024 (Newton-Schulz).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import ScalarOrSchedule
from optix._keypath import path_str
from optix.transforms._matrix_spec import MatrixLayout
from optix.transforms._regularize import add_decayed_weights

_HIGHEST = jax.lax.Precision.HIGHEST


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` at full precision (TPUs and GPUs otherwise round float32 inputs), on whole
    matrices when ZeRO splits the state over a mesh with explicit axes."""
    return jnp.matmul(_tree.unsplit(a), _tree.unsplit(b), precision=_HIGHEST)


def check_real_leaves(tree: Any, transform: str) -> None:
    """Float, non-complex leaves only (the eigendecompositions here are real symmetric)."""
    _validate.check_float_leaves(tree, f"`{transform}` params")
    _validate.check_real_leaves(tree, transform)


class BlockGroup(NamedTuple):
    """The blocks of one shape in a matrix cut by :func:`block_groups`: ``n_blocks = rows * cols``
    blocks of ``size_r x size_c``, tiling ``[row0 : row0 + rows * size_r, col0 : col0 + cols *
    size_c]``. Statistics, roots and bases of a group are stacked on a leading axis of
    ``n_blocks``, so one batched decomposition serves every block of the group."""

    row0: int
    rows: int
    size_r: int
    col0: int
    cols: int
    size_c: int

    @property
    def n_blocks(self) -> int:
        return self.rows * self.cols


def _segments(dim: int, block_size: int | None) -> list[tuple[int, int, int]]:
    """``(offset, count, size)`` runs of equal blocks along one side: whole blocks, then the
    shorter last block when ``block_size`` does not divide ``dim``."""
    if block_size is None or dim <= block_size:
        return [(0, 1, dim)]
    full, tail = divmod(dim, block_size)
    return [(0, full, block_size)] + ([(full * block_size, 1, tail)] if tail else [])


def block_groups(shape: tuple[int, int], block_size: int | None) -> list[BlockGroup]:
    """A matrix cut into blocks of at most ``block_size x block_size`` (the last block of a side
    may be smaller), as at most four groups of equal-shaped blocks, row runs first."""
    return [
        BlockGroup(r0, nr, rs, c0, nc, cs)
        for r0, nr, rs in _segments(shape[0], block_size)
        for c0, nc, cs in _segments(shape[1], block_size)
    ]


def stack_blocks(x: jax.Array, group: BlockGroup) -> jax.Array:
    """The ``(n_blocks, size_r, size_c)`` stack of ``group``'s blocks of the matrix ``x``,
    row-major; for a stack of matrices ``x`` (``(count, rows, cols)``), the blocks of each matrix
    in turn, ``(count * n_blocks, size_r, size_c)``."""
    r0, nr, rs, c0, nc, cs = group
    sub = x[..., r0 : r0 + nr * rs, c0 : c0 + nc * cs]
    sub = sub.reshape(*sub.shape[:-2], nr, rs, nc, cs)
    return jnp.moveaxis(sub, -2, -3).reshape(-1, rs, cs)


def unstack_blocks(
    stacks: list[jax.Array], groups: list[BlockGroup], lead: tuple[int, ...] = ()
) -> jax.Array:
    """The matrix whose blocks are ``stacks`` (one stack per group, as :func:`stack_blocks`), or
    the ``(*lead, rows, cols)`` stack of matrices when the blocks came from such a stack."""
    pieces = {
        (g.row0, g.col0): jnp.moveaxis(
            s.reshape(*lead, g.rows, g.cols, g.size_r, g.size_c), -2, -3
        ).reshape(*lead, g.rows * g.size_r, g.cols * g.size_c)
        for s, g in zip(stacks, groups, strict=True)
    }
    row_starts = sorted({g.row0 for g in groups})
    col_starts = sorted({g.col0 for g in groups})
    return jnp.concatenate(
        [jnp.concatenate([pieces[r, c] for c in col_starts], axis=-1) for r in row_starts],
        axis=-2,
    )


def transpose(x: jax.Array) -> jax.Array:
    """Each matrix of a stack transposed (the last two axes swapped)."""
    return jnp.swapaxes(x, -1, -2)


def stacked_eye(count: int, n: int, dtype: DTypeLike) -> jax.Array:
    """``count`` copies of the ``n x n`` identity."""
    return jnp.tile(jnp.eye(n, dtype=dtype), (count, 1, 1))


def spectral_floor(eigenvalues: jax.Array) -> jax.Array:
    """Eigenvalues of a PSD statistic with round-off removed: clipped below at
    ``n * machine_eps * max(eigenvalue)`` (about 1e-7 relative in float32, 1e-16 in float64)."""
    n = eigenvalues.shape[-1]
    floor = n * jnp.finfo(eigenvalues.dtype).eps * jnp.max(eigenvalues, axis=-1, keepdims=True)
    return jnp.maximum(eigenvalues, jnp.maximum(floor, 0))


def inverse_root(stat: jax.Array, p: int, eps: jax.Array) -> jax.Array:
    r"""``(stat + eps I)^{-1/p}`` of a symmetric PSD ``stat`` (or of each matrix of a stack, by
    one batched eigendecomposition)."""
    lam, q = jnp.linalg.eigh(stat)
    lam = (spectral_floor(lam) + eps) ** (-1.0 / p)
    return matmul(q * lam[..., None, :], transpose(q))


def accumulate(stat: jax.Array, outer: jax.Array, decay: jax.Array) -> jax.Array:
    """``stat + outer`` when ``decay == 1`` (a running sum, as in the paper), else the EMA
    ``decay * stat + (1 - decay) * outer``."""
    return decay * stat + jnp.where(decay == 1, 1, 1 - decay) * outer


def leaf_layout(
    layout: MatrixLayout | None, block_size: int | None, max_precond_dim: int
) -> tuple[list[BlockGroup], list[tuple[bool, bool]]] | None:
    """(block groups, which sides each group preconditions) of each matrix of a leaf viewed as
    ``layout`` (:func:`~optix.transforms._matrix_spec.resolve_layout`), or None for a leaf with no
    layout (fewer than two axes) or no elements (those take the diagonal rule)."""
    if layout is None or math.prod(layout.shape) == 0:
        return None
    groups = block_groups(layout.matrix, block_size)
    sides = [(g.size_r <= max_precond_dim, g.size_c <= max_precond_dim) for g in groups]
    return groups, sides


def check_layout_args(
    precondition_frequency: int, block_size: int | None, max_precond_dim: int
) -> None:
    """The integer arguments Shampoo and SOAP share: a refresh period >= 1, blocks of side >= 1
    (or None: one block per leaf), and a largest preconditioned side >= 0."""
    _validate.check_int("precondition_frequency", precondition_frequency, 1)
    if block_size is not None:
        _validate.check_int("block_size", block_size, 1)
    _validate.check_int("max_precond_dim", max_precond_dim, 0)


def check_leaf_shapes(
    updates: Any, leaves: Any, leaf_init: Any, is_leaf: Any, what: str, layouts: list
) -> None:
    """Raise ``ValueError`` naming the first leaf of ``updates`` whose shape would give a state of
    other shapes than the one in ``leaves`` (the per-leaf states, built by ``leaf_init(leaf,
    layout)`` with the leaf's entry of ``layouts``)."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(updates)
    states = treedef.flatten_up_to(jax.tree.map(lambda s: [s], leaves, is_leaf=is_leaf))
    for (path, g), (s,), lay in zip(pairs, states, layouts, strict=True):
        struct = jax.ShapeDtypeStruct(g.shape, g.dtype)
        want = jax.eval_shape(lambda x, lay=lay: leaf_init(x, lay), struct)
        shapes = lambda t: jax.tree.map(lambda x: tuple(x.shape), t)  # noqa: E731
        if jax.tree.structure(want) != jax.tree.structure(s) or shapes(want) != shapes(s):
            raise ValueError(
                f"updates leaf '{path_str(path)}' has shape {tuple(g.shape)}, but the `{what}` "
                "state there was built for a leaf of another shape (was the gradient taken with "
                "respect to the same params?)"
            )


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


def decayed_weights(
    weight_decay: ScalarOrSchedule, mask: Any | Callable[[Any], Any] | None
) -> list[GradientTransformation]:
    """``[add_decayed_weights(weight_decay, mask)]``, or ``[]`` when the decay is a concrete zero
    (then the chain needs no params)."""
    if _validate.concrete_float(weight_decay) == 0.0:
        return []
    return [add_decayed_weights(weight_decay, mask)]
