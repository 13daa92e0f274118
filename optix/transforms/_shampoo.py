"""Shampoo: Kronecker-factored preconditioning of matrix-shaped leaves, block by block.

Also the block layout and the symmetric-matrix helpers shared with :mod:`optix.transforms._soap`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, ScalarOrSchedule, Updates
from optix._hyperparams import Hyperparams, HyperparamState, register_rules
from optix._keypath import path_str

_HIGHEST = jax.lax.Precision.HIGHEST
_SHAPELESS = object()  # a reference leaf whose shape :func:`check_leaf_shapes` checks instead


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` at full precision (TPUs and GPUs otherwise round float32 inputs), on whole
    matrices when ZeRO splits the state over a mesh with explicit axes."""
    return jnp.matmul(_tree.unsplit(a), _tree.unsplit(b), precision=_HIGHEST)


def check_real_leaves(tree: Any, transform: str) -> None:
    """Float, non-complex leaves only (the eigendecompositions here are real symmetric)."""
    _validate.check_float_leaves(tree, f"`{transform}` params")
    _validate.check_real_leaves(tree, transform)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The matrix a leaf of ``ndim >= 2`` is preconditioned as: all leading axes merged,
    ``(prod(shape[:-1]), shape[-1])`` (a flax conv kernel ``(h, w, in, out)`` is ``(h*w*in, out)``)."""
    return math.prod(shape[:-1]), shape[-1]


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
    """The ``(n_blocks, size_r, size_c)`` stack of ``group``'s blocks of the matrix ``x``, row-major."""
    r0, nr, rs, c0, nc, cs = group
    sub = x[r0 : r0 + nr * rs, c0 : c0 + nc * cs]
    return sub.reshape(nr, rs, nc, cs).transpose(0, 2, 1, 3).reshape(nr * nc, rs, cs)


def unstack_blocks(stacks: list[jax.Array], groups: list[BlockGroup]) -> jax.Array:
    """The matrix whose blocks are ``stacks`` (one stack per group, as :func:`stack_blocks`)."""
    pieces = {
        (g.row0, g.col0): s.reshape(g.rows, g.cols, g.size_r, g.size_c)
        .transpose(0, 2, 1, 3)
        .reshape(g.rows * g.size_r, g.cols * g.size_c)
        for s, g in zip(stacks, groups, strict=True)
    }
    row_starts = sorted({g.row0 for g in groups})
    col_starts = sorted({g.col0 for g in groups})
    return jnp.concatenate(
        [jnp.concatenate([pieces[r, c] for c in col_starts], axis=1) for r in row_starts], axis=0
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
    """``(stat + eps I)^{-1/p}`` of a symmetric PSD ``stat`` (or of each matrix of a stack, by
    one batched eigendecomposition)."""
    lam, q = jnp.linalg.eigh(stat)
    lam = (spectral_floor(lam) + eps) ** (-1.0 / p)
    return matmul(q * lam[..., None, :], transpose(q))


def accumulate(stat: jax.Array, outer: jax.Array, decay: jax.Array) -> jax.Array:
    """``stat + outer`` when ``decay == 1`` (a running sum, as in the paper), else the EMA
    ``decay * stat + (1 - decay) * outer``."""
    return decay * stat + jnp.where(decay == 1, 1, 1 - decay) * outer


class ShampooLeafState(NamedTuple):
    """Per-leaf state of :func:`scale_by_shampoo`. The tuples run over the leaf's groups of
    equal-shaped blocks (:func:`block_groups`); each entry stacks that group's blocks on its
    leading axis, ``(n_blocks, n, n)``, or is None where that side is not preconditioned."""

    left: tuple  # L of each block
    right: tuple  # R of each block
    left_root: tuple  # L^{-1/p}, refreshed every ``precondition_frequency`` steps
    right_root: tuple  # R^{-1/p}
    diag: jax.Array | None  # diagonal AdaGrad statistic: 1-D leaves and unpreconditioned blocks


class ScaleByShampooState(NamedTuple):
    """State of :func:`scale_by_shampoo`."""

    hyperparams: HyperparamState  # eps, stat_decay (graft_eps, graft_b2 with grafting)
    leaves: Updates  # a ShampooLeafState per leaf
    graft: Updates | None  # grafting second moment per leaf (None without grafting)


register_rules(
    ScaleByShampooState,
    stat_decay=_validate.check_closed_unit_interval,
    graft_eps=_validate.check_nonnegative,
    graft_b2=_validate.check_unit_interval,
)


def leaf_layout(
    shape: tuple[int, ...], block_size: int | None, max_precond_dim: int
) -> tuple[list[BlockGroup], list[tuple[bool, bool]]] | None:
    """(block groups, which sides each group preconditions) of a leaf, or None for a leaf with
    fewer than two axes or no elements (those take the diagonal rule)."""
    if len(shape) < 2 or math.prod(shape) == 0:
        return None
    groups = block_groups(matrix_shape(shape), block_size)
    sides = [(g.size_r <= max_precond_dim, g.size_c <= max_precond_dim) for g in groups]
    return groups, sides


def check_leaf_shapes(updates: Any, leaves: Any, leaf_init: Any, is_leaf: Any, what: str) -> None:
    """Raise ``ValueError`` naming the first leaf of ``updates`` whose shape would give a state of
    other shapes than the one in ``leaves`` (the per-leaf states, built by ``leaf_init``)."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(updates)
    states = treedef.flatten_up_to(jax.tree.map(lambda s: [s], leaves, is_leaf=is_leaf))
    for (path, g), (s,) in zip(pairs, states, strict=True):
        want = jax.eval_shape(leaf_init, jax.ShapeDtypeStruct(g.shape, g.dtype))
        shapes = lambda t: jax.tree.map(lambda x: tuple(x.shape), t)  # noqa: E731
        if jax.tree.structure(want) != jax.tree.structure(s) or shapes(want) != shapes(s):
            raise ValueError(
                f"updates leaf '{path_str(path)}' has shape {tuple(g.shape)}, but the `{what}` "
                "state there was built for a leaf of another shape (was the gradient taken with "
                "respect to the same params?)"
            )


def scale_by_shampoo(
    eps: ScalarOrSchedule = 1e-6,
    stat_decay: ScalarOrSchedule = 1.0,
    *,
    precondition_frequency: int = 1,
    block_size: int | None = None,
    max_precond_dim: int = 1024,
    graft: Literal["none", "adagrad", "adam"] = "none",
    graft_eps: ScalarOrSchedule = 1e-8,
    graft_b2: ScalarOrSchedule = 0.999,
    stat_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Precondition each matrix on both sides by inverse fourth roots of gradient statistics.

    .. math::
        L_t = L_{t-1} + G_t G_t^T, \quad R_t = R_{t-1} + G_t^T G_t, \quad
        u_t = (L_t + \epsilon I)^{-1/4} \, G_t \, (R_t + \epsilon I)^{-1/4}

    (Algorithm 1 of the paper, whose ``L_0 = eps I``). Leaves with 3 or more axes are
    preconditioned as ``(prod(shape[:-1]), shape[-1])`` matrices. Each matrix is cut into blocks of
    at most ``block_size`` per side, each block with its own ``L`` and ``R``; a block side longer
    than ``max_precond_dim`` gets no factor, and the other side's root becomes ``-1/2`` (the
    exponent is ``-1/(2k)`` with ``k`` the number of preconditioned sides, as in the paper's
    order-``k`` Algorithm 2). A block with no preconditioned side, and every scalar or 1-D leaf,
    takes diagonal AdaGrad: ``u = g / sqrt(H + eps)`` with ``H`` accumulated like ``L``. Blocks of
    one shape are stacked and share one batched ``eigh``, so the compiled step does not grow with
    the number of blocks (a leaf has at most four block shapes).

    The roots are recomputed by ``eigh`` every ``precondition_frequency`` steps (on steps 1,
    1 + f, ...) and reused in between. Round-off in the eigenvalues of the PSD statistics is
    clipped to ``n * machine_eps * max eigenvalue`` before ``eps`` is added: in float64 this
    changes nothing measurable, in float32 it keeps noise directions from being amplified; keep
    ``eps`` well above ``1e-7 * max eigenvalue`` when running in float32.

    With ``graft``, each leaf's update keeps Shampoo's direction but takes the norm of a simpler
    optimizer's update (layer-wise grafting, Agarwal et al. 2020): ``"adagrad"``
    (``g / (sqrt(sum g^2) + graft_eps)``) or ``"adam"`` (Adam's bias-corrected second moment
    without momentum, ``g / (sqrt(v_hat) + graft_eps)``).

    Args:
      eps: damping ``epsilon`` added to every statistic before its root.
      stat_decay: 1 (default) sums the statistics as in the paper; below 1 they are an EMA with
        that decay.
      precondition_frequency: recompute the roots every this many steps.
      block_size: largest block side; None: one block per leaf.
      max_precond_dim: block sides longer than this get no preconditioner.
      graft: ``"none"``, ``"adagrad"`` or ``"adam"``.
      graft_eps, graft_b2: the grafted optimizer's ``eps`` and (Adam) second-moment decay.
      stat_dtype: dtype of the statistics and roots; default: the compute dtype (>= float32).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_shampoo(block_size=128, precondition_frequency=10)
      >>> state = tx.init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})

    Reference: Gupta, Koren & Singer, "Shampoo: preconditioned stochastic tensor optimization",
    ICML 2018; Anil et al., "Scalable second order optimization for deep learning", 2020
    (blocking, grafting).
    """
    _validate.check_nonnegative("eps", eps)
    _validate.check_closed_unit_interval("stat_decay", stat_decay)
    _validate.check_int("precondition_frequency", precondition_frequency, 1)
    if block_size is not None:
        _validate.check_int("block_size", block_size, 1)
    _validate.check_int("max_precond_dim", max_precond_dim, 0)
    _tree.check_state_dtype("stat_dtype", stat_dtype)
    if graft not in ("none", "adagrad", "adam"):
        raise ValueError(f"`graft` must be 'none', 'adagrad' or 'adam', got {graft!r}")
    specs = {"eps": eps, "stat_decay": stat_decay}
    if graft != "none":
        _validate.check_nonnegative("graft_eps", graft_eps)
        specs["graft_eps"] = graft_eps
    if graft == "adam":
        _validate.check_unit_interval("graft_b2", graft_b2)
        specs["graft_b2"] = graft_b2
    spec = Hyperparams(**specs)
    is_leaf_state = lambda x: isinstance(x, ShampooLeafState)  # noqa: E731

    def leaf_init(p):
        dtype = _tree.state_dtype(p.dtype, stat_dtype)
        layout = leaf_layout(p.shape, block_size, max_precond_dim)
        if layout is None:
            return ShampooLeafState((), (), (), (), jnp.zeros(p.shape, dtype))
        groups, sides = layout
        pairs = list(zip(groups, sides, strict=True))
        zero = lambda g, n, on: jnp.zeros((g.n_blocks, n, n), dtype) if on else None  # noqa: E731
        eye = lambda g, n, on: stacked_eye(g.n_blocks, n, dtype) if on else None  # noqa: E731
        needs_diag = any(not any(s) for s in sides)
        return ShampooLeafState(
            tuple(zero(g, g.size_r, s[0]) for g, s in pairs),
            tuple(zero(g, g.size_c, s[1]) for g, s in pairs),
            tuple(eye(g, g.size_r, s[0]) for g, s in pairs),
            tuple(eye(g, g.size_c, s[1]) for g, s in pairs),
            jnp.zeros(matrix_shape(p.shape), dtype) if needs_diag else None,
        )

    def init(params):
        params = _tree.as_arrays(params)
        check_real_leaves(params, "scale_by_shampoo")
        leaves = jax.tree.map(leaf_init, params)
        nu = None
        if graft != "none":
            nu = _tree.moments_like(params)
        return ScaleByShampooState(spec.init(), leaves, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        shapeless = jax.tree.map(lambda _: _SHAPELESS, state.leaves, is_leaf=is_leaf_state)
        _validate.check_updates(updates, shapeless, "scale_by_shampoo")
        check_real_leaves(updates, "scale_by_shampoo")
        check_leaf_shapes(updates, state.leaves, leaf_init, is_leaf_state, "scale_by_shampoo")
        hp, hyperparams = spec.step(state.hyperparams)
        decay, damp = hp["stat_decay"], hp["eps"]
        refresh = state.hyperparams.count % precondition_frequency == 0

        def precondition(g, s):
            gc = _tree.upcast(g)
            layout = leaf_layout(g.shape, block_size, max_precond_dim)
            if layout is None:
                h = accumulate(s.diag, gc * gc, decay)
                u = gc / jnp.sqrt(h.astype(gc.dtype) + damp)
                return u, ShampooLeafState((), (), (), (), h.astype(s.diag.dtype))
            groups, sides = layout
            gm = gc.reshape(matrix_shape(g.shape))
            diag = None if s.diag is None else accumulate(s.diag, gm * gm, decay)
            parts, lefts, rights, lroots, rroots = [], [], [], [], []
            # each group's blocks stacked: one batched eigh per group, whatever the block count
            for i, (group, (on_l, on_r)) in enumerate(zip(groups, sides, strict=True)):
                g_blk = gb = stack_blocks(gm, group)
                p = 2 * (on_l + on_r)
                left = right = lroot = rroot = None
                if on_l:
                    left = accumulate(s.left[i], matmul(g_blk, transpose(g_blk)), decay)
                    left = left.astype(s.left[i].dtype)
                    lroot = _refresh(refresh, left, s.left_root[i], p, damp)
                    gb = matmul(lroot.astype(gb.dtype), gb)
                if on_r:
                    right = accumulate(s.right[i], matmul(transpose(g_blk), g_blk), decay)
                    right = right.astype(s.right[i].dtype)
                    rroot = _refresh(refresh, right, s.right_root[i], p, damp)
                    gb = matmul(gb, rroot.astype(gb.dtype))
                if diag is not None and not (on_l or on_r):
                    gb = gb / jnp.sqrt(stack_blocks(diag, group).astype(gb.dtype) + damp)
                parts.append(gb)
                lefts.append(left)
                rights.append(right)
                lroots.append(lroot)
                rroots.append(rroot)
            u = unstack_blocks(parts, groups).reshape(g.shape)
            new = ShampooLeafState(
                tuple(lefts),
                tuple(rights),
                tuple(lroots),
                tuple(rroots),
                None if diag is None else diag.astype(s.diag.dtype),
            )
            return u, new

        def plain(g, s):
            u, new = precondition(g, s)
            return u.astype(g.dtype), new

        def grafted(g, s, v):
            u, new = precondition(g, s)
            gc = _tree.upcast(g)
            if graft == "adagrad":
                v_new = v + gc * gc
                v_hat = v_new
            else:
                v_new = hp["graft_b2"] * v + (1 - hp["graft_b2"]) * gc * gc
                v_hat = v_new / _tree.bias_correction(hp["graft_b2"], hyperparams.count)
            base = gc / (jnp.sqrt(v_hat) + hp["graft_eps"])
            u_norm = jnp.sqrt(jnp.sum(u * u))
            ratio = jnp.sqrt(jnp.sum(base * base)) / jnp.where(u_norm > 0, u_norm, 1)
            return (u * ratio).astype(g.dtype), new, v_new.astype(v.dtype)

        if graft == "none":
            updates, leaves = _tree.map_leaves(plain, updates, state.leaves, n_out=2)
            nu = None
        else:
            updates, leaves, nu = _tree.map_leaves(
                grafted, updates, state.leaves, state.graft, n_out=3
            )
        return updates, ScaleByShampooState(hyperparams, leaves, nu)

    def _refresh(refresh, stat, old_root, p, damp):
        if precondition_frequency == 1:
            return inverse_root(stat, p, damp).astype(old_root.dtype)
        return jax.lax.cond(
            refresh,
            lambda: inverse_root(stat, p, damp).astype(old_root.dtype),
            lambda: old_root,
        )

    return GradientTransformation(init, update)
