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
from typing import Any
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


def block_factors(
    lay: MatrixLayout,
    layout: tuple[list[BlockGroup], list[tuple[bool, bool]]],
    dtype: DTypeLike,
) -> tuple[tuple, tuple, tuple, tuple]:
    """The starting factors of a leaf cut by :func:`leaf_layout`, one entry per group of equal
    blocks (each of the leaf's matrices times its blocks, stacked on the leading axis): zero
    statistics ``L`` and ``R``, then identities for what is kept of ``L`` and ``R`` (inverse
    roots, eigenbases). A side that is not preconditioned has None."""
    groups, sides = layout

    def stacked(group: BlockGroup, k: int, on: bool, eye: bool) -> jax.Array | None:
        n = lay.n_matrices * group.n_blocks
        if not on:
            return None
        return stacked_eye(n, k, dtype) if eye else jnp.zeros((n, k, k), dtype)

    pairs = list(zip(groups, sides, strict=True))
    return (
        tuple(stacked(g, g.size_r, on_l, False) for g, (on_l, _) in pairs),
        tuple(stacked(g, g.size_c, on_r, False) for g, (_, on_r) in pairs),
        tuple(stacked(g, g.size_r, on_l, True) for g, (on_l, _) in pairs),
        tuple(stacked(g, g.size_c, on_r, True) for g, (_, on_r) in pairs),
    )


def init_leaf_states(
    params: Any, leaf_init: Callable[[Any, Any], Any], layouts_of: Callable[[Any], Any], what: str
) -> tuple[Any, Any]:
    """``params`` as arrays (real floats checked, errors naming ``what``), and the per-leaf states
    ``leaf_init(leaf, layout)`` with each leaf's layout from ``layouts_of``."""
    params = _tree.as_arrays(params)
    bare = _tree.unwrap_variables(params)  # per-leaf nodes never sit in a Variable
    check_real_leaves(params, what)
    return params, _tree.map_leaves(leaf_init, bare, layouts_of(bare))


_SHAPELESS = object()  # a reference leaf whose shape :func:`check_leaf_shapes` checks instead


def checked_layouts(
    updates: Any,
    leaves: Any,
    leaf_init: Callable[[Any, Any], Any],
    is_leaf: Callable[[Any], bool],
    layouts_of: Callable[[Any], Any],
    what: str,
    *,
    flat: bool = False,
) -> Any:
    """The layouts of ``updates`` (from ``layouts_of``: a tree like ``updates``, or with ``flat`` a
    list, one per leaf), after checking them against the per-leaf states ``leaves``: the tree
    structure, real float leaves, and each leaf's shape against the state ``leaf_init`` would
    build for it (errors name ``what`` and the leaf's path)."""
    shapeless = jax.tree.map(lambda _: _SHAPELESS, leaves, is_leaf=is_leaf)
    _validate.check_updates(updates, shapeless, what)
    check_real_leaves(updates, what)
    layouts = layouts_of(updates)
    flat_layouts = layouts if flat else jax.tree.structure(updates).flatten_up_to(layouts)
    check_leaf_shapes(updates, leaves, leaf_init, is_leaf, what, flat_layouts)
    return layouts


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


def decayed_weights(
    weight_decay: ScalarOrSchedule, mask: Any | Callable[[Any], Any] | None
) -> list[GradientTransformation]:
    """``[add_decayed_weights(weight_decay, mask)]``, or ``[]`` when the decay is a concrete zero
    (then the chain needs no params)."""
    if _validate.concrete_float(weight_decay) == 0.0:
        return []
    return [add_decayed_weights(weight_decay, mask)]
