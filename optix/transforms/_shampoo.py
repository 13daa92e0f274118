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

_HIGHEST = jax.lax.Precision.HIGHEST


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


def _splits(dim: int, block_size: int | None) -> list[tuple[int, int]]:
    if block_size is None or dim <= block_size:
        return [(0, dim)]
    return [(s, min(s + block_size, dim)) for s in range(0, dim, block_size)]


def blocks(shape: tuple[int, int], block_size: int | None) -> list[tuple[slice, slice]]:
    """Row-major ``(rows, cols)`` slices cutting a matrix into blocks of at most
    ``block_size x block_size`` (the last block of a dimension may be smaller)."""
    rows, cols = _splits(shape[0], block_size), _splits(shape[1], block_size)
    return [(slice(*r), slice(*c)) for r in rows for c in cols]


def side_dims(block: tuple[slice, slice]) -> tuple[int, int]:
    return block[0].stop - block[0].start, block[1].stop - block[1].start


def set_blocks(parts: list[jax.Array], shape: tuple[int, ...], block_size: int | None) -> jax.Array:
    """Reassemble the blocks produced in :func:`blocks` order into one matrix."""
    rows, cols = _splits(shape[0], block_size), _splits(shape[1], block_size)
    it = iter(parts)
    return jnp.concatenate(
        [jnp.concatenate([next(it) for _ in cols], axis=1) for _ in rows], axis=0
    )


def spectral_floor(eigenvalues: jax.Array) -> jax.Array:
    """Eigenvalues of a PSD statistic with round-off removed: clipped below at
    ``n * machine_eps * max(eigenvalue)`` (about 1e-7 relative in float32, 1e-16 in float64)."""
    n = eigenvalues.shape[-1]
    floor = n * jnp.finfo(eigenvalues.dtype).eps * jnp.max(eigenvalues, axis=-1, keepdims=True)
    return jnp.maximum(eigenvalues, jnp.maximum(floor, 0))


def inverse_root(stat: jax.Array, p: int, eps: jax.Array) -> jax.Array:
    """``(stat + eps I)^{-1/p}`` of a symmetric PSD ``stat``, by eigendecomposition."""
    lam, q = jnp.linalg.eigh(stat)
    lam = (spectral_floor(lam) + eps) ** (-1.0 / p)
    return matmul(q * lam[..., None, :], q.T)


def accumulate(stat: jax.Array, outer: jax.Array, decay: jax.Array) -> jax.Array:
    """``stat + outer`` when ``decay == 1`` (a running sum, as in the paper), else the EMA
    ``decay * stat + (1 - decay) * outer``."""
    return decay * stat + jnp.where(decay == 1, 1, 1 - decay) * outer


class ShampooLeafState(NamedTuple):
    """Per-leaf state of :func:`scale_by_shampoo`; tuples run over the leaf's blocks."""

    left: tuple  # L per block (None where that side is not preconditioned)
    right: tuple  # R per block
    left_root: tuple  # L^{-1/p} per block, refreshed every ``precondition_frequency`` steps
    right_root: tuple  # R^{-1/p} per block
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


def leaf_layout(shape, block_size, max_precond_dim):
    """(blocks, which sides each block preconditions) of a leaf, or None for a diagonal leaf."""
    if len(shape) < 2:
        return None
    bl = blocks(matrix_shape(shape), block_size)
    sides = [tuple(d <= max_precond_dim for d in side_dims(b)) for b in bl]
    return bl, sides


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
    """Precondition each matrix on both sides by inverse fourth roots of gradient statistics.

    .. math::
        L_t = L_{t-1} + G_t G_t^T, \\quad R_t = R_{t-1} + G_t^T G_t, \\quad
        u_t = (L_t + \\epsilon I)^{-1/4} \\, G_t \\, (R_t + \\epsilon I)^{-1/4}

    (Algorithm 1 of the paper, whose ``L_0 = eps I``). Leaves with 3 or more axes are
    preconditioned as ``(prod(shape[:-1]), shape[-1])`` matrices. Each matrix is cut into blocks of
    at most ``block_size`` per side, each block with its own ``L`` and ``R``; a block side longer
    than ``max_precond_dim`` gets no factor, and the other side's root becomes ``-1/2`` (the
    exponent is ``-1/(2k)`` with ``k`` the number of preconditioned sides, as in the paper's
    order-``k`` Algorithm 2). A block with no preconditioned side, and every scalar or 1-D leaf,
    takes diagonal AdaGrad: ``u = g / sqrt(H + eps)`` with ``H`` accumulated like ``L``.

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
        dtype = jnp.dtype(stat_dtype) if stat_dtype is not None else _tree.compute_dtype(p.dtype)
        layout = leaf_layout(p.shape, block_size, max_precond_dim)
        if layout is None:
            return ShampooLeafState((), (), (), (), jnp.zeros(p.shape, dtype))
        bl, sides = layout
        zero = lambda n, on: jnp.zeros((n, n), dtype) if on else None  # noqa: E731
        eye = lambda n, on: jnp.eye(n, dtype=dtype) if on else None  # noqa: E731
        dims = [side_dims(b) for b in bl]
        needs_diag = any(not any(s) for s in sides)
        return ShampooLeafState(
            tuple(zero(r, s[0]) for (r, _), s in zip(dims, sides, strict=True)),
            tuple(zero(c, s[1]) for (_, c), s in zip(dims, sides, strict=True)),
            tuple(eye(r, s[0]) for (r, _), s in zip(dims, sides, strict=True)),
            tuple(eye(c, s[1]) for (_, c), s in zip(dims, sides, strict=True)),
            jnp.zeros(matrix_shape(p.shape), dtype) if needs_diag else None,
        )

    def init(params):
        check_real_leaves(params, "scale_by_shampoo")
        leaves = jax.tree.map(leaf_init, params)
        nu = None
        if graft != "none":
            nu = jax.tree.map(lambda p: jnp.zeros(p.shape, _tree.compute_dtype(p.dtype)), params)
        return ScaleByShampooState(spec.init(), leaves, nu)

    def update(updates, state, params=None, **extra):
        del params, extra
        reference = jax.tree.map(lambda _: 0, state.leaves, is_leaf=is_leaf_state)
        _validate.check_updates(updates, reference, "scale_by_shampoo")
        check_real_leaves(updates, "scale_by_shampoo")
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
            bl, sides = layout
            gm = gc.reshape(matrix_shape(g.shape))
            diag = None if s.diag is None else accumulate(s.diag, gm * gm, decay)
            parts, lefts, rights, lroots, rroots = [], [], [], [], []
            for i, (b, (on_l, on_r)) in enumerate(zip(bl, sides, strict=True)):
                g_blk = gb = gm[b]
                p = 2 * (on_l + on_r)
                left = right = lroot = rroot = None
                if on_l:
                    left = accumulate(s.left[i], matmul(g_blk, g_blk.T), decay)
                    left = left.astype(s.left[i].dtype)
                    lroot = _refresh(refresh, left, s.left_root[i], p, damp)
                    gb = matmul(lroot.astype(gb.dtype), gb)
                if on_r:
                    right = accumulate(s.right[i], matmul(g_blk.T, g_blk), decay)
                    right = right.astype(s.right[i].dtype)
                    rroot = _refresh(refresh, right, s.right_root[i], p, damp)
                    gb = matmul(gb, rroot.astype(gb.dtype))
                if diag is not None and not (on_l or on_r):
                    gb = gb / jnp.sqrt(diag[b].astype(gb.dtype) + damp)
                parts.append(gb)
                lefts.append(left)
                rights.append(right)
                lroots.append(lroot)
                rroots.append(rroot)
            u = set_blocks(parts, gm.shape, block_size).reshape(g.shape)
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
