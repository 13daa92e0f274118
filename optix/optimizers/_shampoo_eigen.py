r"""Eigenvalue-corrected Shampoo: a diagonal second moment kept in the eigenbasis of Shampoo's
Kronecker factors (the SOAP-like preconditioner of Distributed Shampoo).

Reference: George, Laurent, Bouthillier, Ballas & Vincent, `Fast approximate natural gradient
descent in a Kronecker-factored eigenbasis <https://arxiv.org/abs/1806.03884>`_, NeurIPS 2018
(EKFAC); Eschenhagen et al., `Purifying Shampoo: investigating Shampoo's heuristics by
decomposing its preconditioner <https://arxiv.org/abs/2506.03595>`_, 2025; Shi et al., `A
distributed data-parallel PyTorch implementation of the distributed Shampoo optimizer
<https://arxiv.org/abs/2309.06497>`_, 2023 (``EigenvalueCorrectedShampooPreconditionerConfig``).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix._base import GradientTransformation
from optix._base import Updates
from optix.toolkit import Beta
from optix.toolkit import Fraction
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import transform
from optix.transforms._distribute import map_leaf_jobs
from optix.transforms._layer_graft import Graft
from optix.transforms._layer_graft import check_graft
from optix.transforms._layer_graft import graft_hyperparams
from optix.transforms._layer_graft import graft_leaves
from optix.transforms._layer_graft import graft_state
from optix.transforms._matrix import accumulate
from optix.transforms._matrix import block_factors
from optix.transforms._matrix import check_layout_args
from optix.transforms._matrix import checked_layouts
from optix.transforms._matrix import init_leaf_states
from optix.transforms._matrix import leaf_layout
from optix.transforms._matrix import matmul
from optix.transforms._matrix import stack_blocks
from optix.transforms._matrix import transpose
from optix.transforms._matrix import unstack_blocks
from optix.transforms._matrix_spec import layout_tree


class EigenShampooLeafState(NamedTuple):
    """Per-leaf state of :func:`scale_by_eigenvalue_corrected_shampoo`. The tuples run over the
    leaf's groups of equal-shaped blocks, each entry stacking the group's blocks on its leading
    axis (None where that side is not preconditioned)."""

    left: tuple  # L of each block, (n_blocks, m, m)
    right: tuple  # R of each block, (n_blocks, n, n)
    left_basis: tuple  # eigenvectors Q_L of L, refreshed every ``precondition_frequency`` steps
    right_basis: tuple  # eigenvectors Q_R of R
    corrected: tuple  # D: the second moment of Q_L^T G Q_R, (n_blocks, m, n)
    diag: jax.Array | None  # D of a leaf without a matrix (scalars, vectors), the leaf's shape


class ScaleByEigenShampooState(NamedTuple):
    """State of :func:`scale_by_eigenvalue_corrected_shampoo`."""

    hyperparams: HyperparamState  # eps, stat_decay (graft_eps, graft_b2 with grafting)
    leaves: Updates  # an EigenShampooLeafState per leaf
    graft: Updates | None  # grafting second moment per leaf (None without one)


def _rotate(x: jax.Array, ql: jax.Array | None, qr: jax.Array | None, back: bool) -> jax.Array:
    """``Q_L^T X Q_R`` (into the eigenbasis), or ``Q_L X Q_R^T`` with ``back``; a side without a
    basis is left alone."""
    if ql is not None:
        x = matmul(ql.astype(x.dtype) if back else transpose(ql).astype(x.dtype), x)
    if qr is not None:
        x = matmul(x, transpose(qr).astype(x.dtype) if back else qr.astype(x.dtype))
    return x


def _scaled(x: jax.Array, d: jax.Array, decay: Any, eps: Any, c: Any) -> tuple[jax.Array, Any]:
    """``x / (sqrt(D / c) + eps)``, after the second moment ``D`` took ``x``'s square: and the
    new ``D``."""
    d = accumulate(d, x * x, decay)
    return x / (jnp.sqrt(d.astype(x.dtype) / c) + eps), d


@transform(ScaleByEigenShampooState)
def scale_by_eigenvalue_corrected_shampoo(
    eps: NonNegative = 1e-6,
    stat_decay: Fraction = 1.0,
    *,
    precondition_frequency: int = 1,
    block_size: int | None = None,
    max_precond_dim: int = 1024,
    graft: Graft = "none",
    graft_eps: NonNegative = 1e-8,
    graft_b2: Beta = 0.999,
    stat_dtype: DTypeLike | None = None,
    matrix_spec: Any = None,
) -> GradientTransformation:
    r"""Precondition each matrix by a diagonal second moment in the eigenbasis of Shampoo's
    factors (eigenvalue-corrected Shampoo, EShampoo).

    .. math::
        L_t = \beta L_{t-1} + w\, G_t G_t^T, \quad R_t = \beta R_{t-1} + w\, G_t^T G_t, \quad
        L_t = Q_L \Lambda_L Q_L^T, \quad R_t = Q_R \Lambda_R Q_R^T,

        X_t = Q_L^T G_t Q_R, \quad D_t = \beta D_{t-1} + w\, X_t \odot X_t, \quad
        u_t = Q_L \Big( X_t \oslash \big(\sqrt{D_t / c_t} + \epsilon\big) \Big) Q_R^T

    with ``beta = stat_decay``: ``w = 1`` and ``c_t = 1`` when it is 1 (running sums), else
    ``w = 1 - beta`` and ``c_t = 1 - beta^t`` (bias correction). The bases ``Q_L``, ``Q_R`` are
    recomputed by ``eigh`` of the current ``L_t``, ``R_t`` every ``precondition_frequency`` steps
    (on steps 1, 1 + f, ...) and kept in between; ``D`` is updated on every step in the current
    basis and is not rotated when the basis changes (its entries follow ``eigh``'s ascending
    order of the eigenvalues, so a change of that order mixes them up until they are refilled). Shampoo's eigenvalues ``Lambda`` are never
    used: ``D`` replaces ``Lambda_L \otimes \Lambda_R`` by the gradient's actual second moment in
    that basis (George et al. 2018). With ``stat_decay < 1`` this is Adam (without momentum) in
    Shampoo's eigenbasis: Distributed Shampoo's SOAP-like preconditioner.

    These are the conventions of Distributed Shampoo's
    ``EigenvalueCorrectedShampooPreconditionerConfig`` with its default eigendecomposition and
    exponent ``1/2`` (``epsilon`` added after the root, bias correction on): the factors and ``D``
    see the same gradient, the basis is refreshed before ``D`` takes the step's gradient. Its
    refresh falls on steps ``f, 2f, ...`` after ``start_preconditioning_step``; here on ``1, 1 +
    f, ...``. Blocks, ``max_precond_dim`` (a side longer than it keeps the identity basis),
    ``matrix_spec`` and ``graft`` as in :func:`optix.scale_by_shampoo`; a leaf without a matrix
    (scalars, vectors) takes the diagonal rule ``g / (sqrt(D / c) + eps)``.

    Args:
      eps: ``epsilon`` >= 0 added to ``sqrt(D / c)``.
      stat_decay: ``beta`` in [0, 1] of ``L``, ``R`` and ``D``; 1 (default) sums them.
      precondition_frequency: recompute the bases every this many steps.
      block_size: largest block side; None: one block per matrix.
      max_precond_dim: block sides longer than this keep the identity basis.
      graft, graft_eps, graft_b2: grafting, see :func:`optix.scale_by_shampoo`.
      stat_dtype: dtype of ``L``, ``R``, the bases and ``D``; default: the compute dtype.
      matrix_spec: the :class:`optix.MatrixSpec` of each leaf, see
        :func:`optix.scale_by_shampoo`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.scale_by_eigenvalue_corrected_shampoo(stat_decay=0.95)
      >>> g = {"w": jnp.array([[2.0, 0.0], [0.0, 0.5]])}
      >>> u, state = tx.update(g, tx.init(g))
      >>> bool(jnp.allclose(u["w"], jnp.eye(2), atol=1e-5))  # Adam's first step: sign(g)
      True

    Reference: George et al., `Fast approximate natural gradient descent in a Kronecker-factored
    eigenbasis <https://arxiv.org/abs/1806.03884>`_, NeurIPS 2018; Eschenhagen et al.,
    `Purifying Shampoo <https://arxiv.org/abs/2506.03595>`_, 2025.
    """
    check_layout_args(precondition_frequency, block_size, max_precond_dim)
    _tree.check_state_dtype("stat_dtype", stat_dtype)
    check_graft(graft)
    spec = Hyperparams(
        eps=eps, stat_decay=stat_decay, **graft_hyperparams(graft, graft_eps, graft_b2)
    )
    is_leaf_state = lambda x: isinstance(x, EigenShampooLeafState)  # noqa: E731
    name = "scale_by_eigenvalue_corrected_shampoo"

    def layouts_of(tree):
        return layout_tree(matrix_spec, tree, f"`{name}`")

    def leaf_init(p, lay):
        dtype = _tree.state_dtype(p.dtype, stat_dtype)
        layout = leaf_layout(lay, block_size, max_precond_dim)
        if layout is None:
            return EigenShampooLeafState((), (), (), (), (), jnp.zeros(p.shape, dtype))
        n = lambda g: lay.n_matrices * g.n_blocks  # noqa: E731  (matrices of the stack x blocks)
        corrected = tuple(jnp.zeros((n(g), g.size_r, g.size_c), dtype) for g in layout[0])
        return EigenShampooLeafState(*block_factors(lay, layout, dtype), corrected, None)

    def init(params):
        params, leaves = init_leaf_states(params, leaf_init, layouts_of, name)
        return ScaleByEigenShampooState(spec.init(), leaves, graft_state(params, graft))

    def new_basis(refresh, stat, old):
        """The eigenvectors of ``stat`` on a refresh step, else the basis kept from the last."""
        fresh = lambda: jnp.linalg.eigh(stat)[1].astype(old.dtype)  # noqa: E731
        return fresh() if precondition_frequency == 1 else jax.lax.cond(refresh, fresh, lambda: old)

    def update(updates, state, params=None, **extra):
        del params, extra
        layouts = checked_layouts(updates, state.leaves, leaf_init, is_leaf_state, layouts_of, name)
        h, hyperparams = spec.step(state.hyperparams)
        decay, eps = h.stat_decay, h.eps
        c = jnp.where(decay < 1, _tree.bias_correction(decay, h.t), 1)
        refresh = (h.t - 1) % precondition_frequency == 0  # on steps 1, 1 + f, 1 + 2f, ...

        def prepare(g, s, lay):
            """The leaf's matrix jobs (one per group of equal blocks) and what :func:`finish`
            needs; a leaf without a layout takes the diagonal rule here and has no job."""
            # whole matrices when a mesh with explicit axes splits the leaf (tensor parallelism)
            gc = _tree.unsplit(_tree.upcast(g))
            layout = leaf_layout(lay, block_size, max_precond_dim)
            if layout is None:
                u, d = _scaled(gc, s.diag, decay, eps, c)
                return [], (u, s._replace(diag=d.astype(s.diag.dtype)))
            groups, sides = layout
            gm = lay.to_stack(gc)  # (count, rows, cols): one matrix per batch index and block
            jobs = [
                (
                    sides[i],
                    (stack_blocks(gm, group), s.left[i], s.right[i])
                    + (s.left_basis[i], s.right_basis[i], s.corrected[i]),
                )
                for i, group in enumerate(groups)
            ]
            return jobs, (lay, groups)

        def finish(context, results):
            """The leaf's update and state from its jobs' results."""
            if not results:
                return context
            lay, groups = context
            parts, left, right, ql, qr, d = (tuple(x) for x in zip(*results, strict=True))
            u = lay.from_stack(unstack_blocks(list(parts), groups, (lay.n_matrices,)))
            return u, EigenShampooLeafState(left, right, ql, qr, d, None)

        # the matrix work of every leaf, one job per group of equal blocks; under a distribution
        # (optix.sharding.zero, distribute_matrices) each device computes only its share
        preconditioned, leaves = map_leaf_jobs(
            prepare,
            precondition_block,
            finish,
            (decay, eps, c, refresh),
            updates,
            state.leaves,
            layouts,
        )

        updates, nu = graft_leaves(graft, updates, preconditioned, layouts, state.graft, h)
        return updates, ScaleByEigenShampooState(hyperparams, leaves, nu)

    def precondition_block(sides, arrays, decay, eps, c, refresh):
        """One group of equal blocks (stacked on the leading axis): its statistics, bases and
        second moment in the basis, and its preconditioned blocks."""
        on_l, on_r = sides
        gb, left, right, ql, qr, d = arrays
        if on_l:
            left = accumulate(left, matmul(gb, transpose(gb)), decay).astype(left.dtype)
            ql = new_basis(refresh, left, ql)
        if on_r:
            right = accumulate(right, matmul(transpose(gb), gb), decay).astype(right.dtype)
            qr = new_basis(refresh, right, qr)
        y, d_new = _scaled(_rotate(gb, ql, qr, back=False), d, decay, eps, c)
        return _rotate(y, ql, qr, back=True), left, right, ql, qr, d_new.astype(d.dtype)

    return GradientTransformation(init, update)
