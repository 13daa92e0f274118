r"""GaLore: run an optimizer on low-rank projections of matrix gradients, and the alias.

Reference: Zhao, Zhang, Chen, Wang, Anandkumar & Tian, `GaLore: memory-efficient LLM training by
gradient low-rank projection <https://arxiv.org/abs/2403.03507>`_, ICML 2024.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
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
from optix.optimizers._adam import scale_by_adam
from optix.toolkit import Finite
from optix.toolkit import Hyperparams
from optix.toolkit import HyperparamState
from optix.toolkit import NonNegative
from optix.toolkit import checked
from optix.toolkit import transform
from optix.transforms._regularize import add_decayed_weights
from optix.transforms._scale import scale_lr

Mask = Any | Callable[[Params], Any] | None


class GaloreDimensionNumbers(NamedTuple):
    """Which axes of a leaf form the rows (``reduction_axis``) and the columns
    (``output_axis``) of the matrix GaLore projects; every axis must be in one of them.
    For example ``GaloreDimensionNumbers(0, (1, 2))`` reads an ``(embed, heads, head_dim)``
    attention kernel as an ``embed x (heads * head_dim)`` matrix."""

    reduction_axis: int | Sequence[int] = 0
    output_axis: int | Sequence[int] = 1


DimensionNumbers = GaloreDimensionNumbers | Any | Callable[[Params], Any] | None


class _Layout(NamedTuple):
    """How one leaf becomes a matrix: transpose, then reshape to ``(rows, cols)``."""

    perm: tuple[int, ...]
    rows: int
    cols: int
    rank: int

    @property
    def left(self) -> bool:  # project the columns' space from the left: P^T G
        return self.rows >= self.cols

    def to_matrix(self, x: jax.Array) -> jax.Array:
        return jnp.transpose(x, self.perm).reshape(self.rows, self.cols)

    def from_matrix(self, m: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        moved = tuple(shape[a] for a in self.perm)
        return jnp.transpose(
            m.reshape(moved), tuple(sorted(range(len(shape)), key=self.perm.__getitem__))
        )

    @property
    def projector_shape(self) -> tuple[int, int]:
        return (self.rows if self.left else self.cols, self.rank)

    @property
    def low_shape(self) -> tuple[int, int]:
        return (self.rank, self.cols) if self.left else (self.rows, self.rank)


def _axes(axis: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _layout(shape: tuple[int, ...], spec: GaloreDimensionNumbers, rank: int, path: str) -> _Layout:
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"GaLore projects leaves of rank >= 2; leaf '{path}' has shape {shape}")
    rows, cols = _axes(spec.reduction_axis, ndim), _axes(spec.output_axis, ndim)
    if set(rows) & set(cols) or sorted(rows + cols) != list(range(ndim)):
        raise ValueError(
            f"`weight_dimension_numbers` for leaf '{path}' (shape {shape}) must split its axes "
            f"into disjoint rows and columns, got {spec}"
        )
    r, c = math.prod(shape[a] for a in rows), math.prod(shape[a] for a in cols)
    return _Layout(rows + cols, r, c, min(rank, r, c))


def _specs(dims: DimensionNumbers, params: Params) -> list[GaloreDimensionNumbers | None]:
    """One spec (or None: not projected) per leaf of ``params``, in flattening order."""
    leaves = jax.tree.leaves(params)
    if dims is None:
        return [GaloreDimensionNumbers() if jnp.ndim(p) == 2 else None for p in leaves]
    if isinstance(dims, GaloreDimensionNumbers):
        return [dims if jnp.ndim(p) >= 2 else None for p in leaves]
    tree = dims(params) if callable(dims) else dims
    is_spec = lambda x: x is None or isinstance(x, GaloreDimensionNumbers)  # noqa: E731
    treedef = jax.tree.structure(params)
    try:
        return treedef.flatten_up_to(tree) if not is_spec(tree) else [tree] * len(leaves)
    except (ValueError, TypeError) as err:
        raise ValueError(
            "`weight_dimension_numbers` must be a GaloreDimensionNumbers, a tree of them (None "
            "for leaves left alone) shaped like the params, or a function returning one"
        ) from err


class ScaleByGaloreState(NamedTuple):
    """State of :func:`scale_by_galore`: the base optimizer's (low-rank) state and projectors."""

    hyperparams: HyperparamState  # scale; count is t
    inner: OptState  # the base optimizer's state, on low-rank gradients for projected leaves
    projector: Updates  # per leaf: the orthonormal (n, r) projector, or a scalar placeholder


@transform(ScaleByGaloreState)
def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: Finite = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: DimensionNumbers = None,
    *,
    svd_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Project matrix gradients onto their top singular vectors, run ``base_optimizer`` there,
    and project its output back.

    For a leaf read as an ``m x n`` matrix ``G_t`` (see ``weight_dimension_numbers``) with
    ``m >= n``, every ``T = update_proj_gap`` steps (``t = 0, T, 2T, ...``)
    ``P = U[:, :r]`` from the SVD ``G_t = U S V^T``, and then

    .. math:: R_t = P^\top G_t, \quad u_t = \alpha\, P\, \rho(R_t)

    with ``rho`` the base optimizer (its state lives in the ``r x n`` space), ``alpha = scale``
    and ``r = min(rank, m, n)``; for ``m < n``, ``P = V[:, :r]`` and ``R_t = G_t P``,
    ``u_t = alpha rho(R_t) P^T``. Other leaves go through ``rho`` unprojected and unscaled
    (``scale`` is for the projected leaves, as in the authors' code). The base
    optimizer must produce a direction from the gradient alone (``scale_by_adam`` by default;
    it gets ``params=None``): put weight decay and the learning rate after this transform, as
    :func:`optix.galore` does. The base state is kept when the projector changes, as in the
    paper and ``optax.contrib.scale_by_galore``, which this matches. The SVD runs in
    ``svd_dtype``, by default the gradient's dtype widened to at least float32 (float64 under
    x64); optax always uses float32 (``svd_dtype=jnp.float32`` reproduces it).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_galore(rank=4, update_proj_gap=100), optix.scale_lr(1e-3))
      >>> state = tx.init({"w": jnp.ones((16, 8)), "b": jnp.ones(8)})
      >>> state[0].projector["w"].shape
      (16, 4)

    Reference: Zhao, Zhang, Chen, Wang, Anandkumar & Tian, `GaLore: memory-efficient LLM
    training by gradient low-rank projection <https://arxiv.org/abs/2403.03507>`_, ICML 2024.
    """
    _validate.check_int("rank", rank, minimum=1)
    _validate.check_int("update_proj_gap", update_proj_gap, minimum=1)
    _tree.check_state_dtype("svd_dtype", svd_dtype)
    base = scale_by_adam() if base_optimizer is None else base_optimizer
    check_transform(base, "`base_optimizer`")
    call_base = caller(base)
    spec = Hyperparams(scale=scale)

    def layouts(tree):
        specs = _specs(weight_dimension_numbers, tree)
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
        leaves = jax.tree.leaves(tree)
        return [
            None if s is None else _layout(tuple(jnp.shape(x)), s, rank, path)
            for s, x, path in zip(specs, leaves, paths, strict=True)
        ]

    def init(params):
        params = _tree.as_arrays(params)
        _validate.check_float_leaves(params, "`scale_by_galore` params")
        _validate.check_real_leaves(params, "scale_by_galore", "it projects with real SVDs")
        leaves, treedef = jax.tree.flatten(params)
        projectors, low = [], []
        for x, lay in zip(leaves, layouts(params), strict=True):
            dt = _tree.state_dtype(x.dtype)
            # a leaf that is not projected keeps a scalar, not an empty array: orbax refuses to
            # save arrays with no elements
            projectors.append(jnp.zeros(() if lay is None else lay.projector_shape, dt))
            low.append(x if lay is None else jnp.zeros(lay.low_shape, x.dtype))
        low_params = treedef.unflatten(low)
        return ScaleByGaloreState(spec.init(), base.init(low_params), treedef.unflatten(projectors))

    def update(updates, state, params=None, **extra):
        del params
        _validate.check_float_leaves(updates, "`scale_by_galore` updates")
        _validate.check_same_structure(
            updates, state.projector, "updates", "the `scale_by_galore` state"
        )
        h, hyperparams = spec.step(state.hyperparams)
        refresh = (h.t - 1) % update_proj_gap == 0  # at steps 0, T, 2T, ... counted from 0
        leaves, treedef = jax.tree.flatten(updates)
        old = treedef.flatten_up_to(state.projector)
        lays = layouts(updates)

        # leaf by leaf over lists, not with leafwise: each leaf has its own layout, goes through
        # matrices of other shapes (low-rank gradients, projectors), and the base optimizer runs
        # on the whole tree between projecting and projecting back
        def project(g, p_old, lay):
            if lay is None:
                return g, p_old
            g2 = lay.to_matrix(_tree.upcast(g))

            def fresh():
                a = g2.astype(svd_dtype) if svd_dtype is not None else g2
                u, _, vh = jnp.linalg.svd(a, full_matrices=False)
                basis = u[:, : lay.rank] if lay.left else vh[: lay.rank, :].T
                return basis.astype(p_old.dtype)

            p = jax.lax.cond(refresh, fresh, lambda: p_old)
            low = p.T @ g2 if lay.left else g2 @ p
            return low.astype(g.dtype), p

        with jax.numpy_dtype_promotion("standard"):
            pairs = [project(g, p, lay) for g, p, lay in zip(leaves, old, lays, strict=True)]
        low_grads = treedef.unflatten([x for x, _ in pairs])
        projectors = [p for _, p in pairs]
        low_steps, inner = call_base(low_grads, state.inner, None, extra)

        def back(u, p, g, lay):
            if lay is None:  # not projected: the base's direction, unscaled
                return u.astype(g.dtype)
            full = _tree.upcast(u)
            full = p @ full if lay.left else full @ p.T
            return (h.scale * lay.from_matrix(full, g.shape)).astype(g.dtype)

        low_leaves = treedef.flatten_up_to(low_steps)
        with jax.numpy_dtype_promotion("standard"):
            out = [
                back(u, p, g, lay)
                for u, p, g, lay in zip(low_leaves, projectors, leaves, lays, strict=True)
            ]
        new_state = ScaleByGaloreState(hyperparams, inner, treedef.unflatten(projectors))
        return treedef.unflatten(out), new_state

    return GradientTransformation(init, update)


@checked
def galore(
    learning_rate: NonNegative,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: Finite = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: NonNegative = 0.0,
    mask: Mask = None,
    weight_dimension_numbers: DimensionNumbers = None,
    *,
    svd_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""GaLore: Adam (or ``base_optimizer``) on rank-``r`` projections of the matrix gradients.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t\bigl(\alpha P \rho(P^\top G_t) + \lambda \theta_{t-1}\bigr)

    It is ``chain(scale_by_galore(...), add_decayed_weights(weight_decay, mask),
    scale_lr(learning_rate))`` (see :func:`scale_by_galore`) and matches
    ``optax.contrib.galore`` (with ``svd_dtype=jnp.float32``; by default optix's SVD runs in the
    gradient's precision). The base optimizer's state is ``r x n`` per ``m x n`` matrix: the
    memory saving. Weight decay applies in the full space, after projecting back.

    Args:
      learning_rate: ``eta`` >= 0, or a schedule.
      rank: the target rank ``r`` >= 1 (capped by each matrix's dimensions).
      update_proj_gap: >= 1 steps between recomputing the projectors from an SVD.
      scale: ``alpha``, multiplies the projected-back direction.
      base_optimizer: a direction transform that reads no params (default ``scale_by_adam()``).
      weight_decay: decoupled decay ``lambda`` >= 0, multiplied by the learning rate.
      mask: which params decay (a pytree of bools, a function of the params, or path patterns).
      weight_dimension_numbers: None (project every 2-D leaf), one
        :class:`GaloreDimensionNumbers` (for every leaf of rank >= 2), a tree of them shaped like
        the params (None: leave that leaf unprojected), or a function of the params returning one.
      svd_dtype: dtype of the SVD (see :func:`scale_by_galore`).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.galore(1e-3, rank=4, update_proj_gap=100, weight_decay=1e-4)
      >>> params = {"w": jnp.ones((16, 8)), "b": jnp.ones(8)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update(params, state, params)

    Reference: Zhao, Zhang, Chen, Wang, Anandkumar & Tian, `GaLore: memory-efficient LLM
    training by gradient low-rank projection <https://arxiv.org/abs/2403.03507>`_, ICML 2024.
    """
    return chain(
        scale_by_galore(
            rank,
            update_proj_gap,
            scale,
            base_optimizer,
            weight_dimension_numbers,
            svd_dtype=svd_dtype,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_lr(learning_rate),
    )
