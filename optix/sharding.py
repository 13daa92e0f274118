"""Optimizers on many devices: shardings for the state, ZeRO-1 state partitioning, and the
matrix optimizers' work split over devices.

An optimizer state mirrors the params: each moment buffer (``mu``, ``nu``, accumulators, slow or
averaged weights) is a tree shaped like the params, possibly with ``None`` holes where a mask or a
partition leaves a param out, next to scalars (step counts, hyperparameters).
:func:`state_shardings`
finds those params-shaped subtrees in the abstract state (``jax.eval_shape(tx.init, params)``, so
nothing is allocated) and gives each buffer leaf the sharding of its param; every other leaf is
replicated over the mesh. With ``zero_axis`` the buffers are also split across the data-parallel
axis (ZeRO stage 1): each device holds ``1/N`` of the optimizer state while params stay replicated.
:func:`zero` wraps a transform so that its state is constrained to that layout inside ``jit``.

The matrix optimizers (Muon, NorMuon, Shampoo, SOAP, PSGD Kron) repeat their per-matrix work
(Newton-Schulz, eigendecompositions, inverse roots, factor fits) on every device unless told
otherwise: :func:`zero` (by default) and :func:`distribute_matrices` split it over a mesh axis, so
that each device computes only the matrices it owns and the results are gathered.

The same code runs on one host with several devices and on a multi-host cluster after
``jax.distributed.initialize()``: shardings name mesh axes, not devices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import AbstractMesh
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
from jax.sharding import Sharding

from optix._base import GradientTransformation
from optix._chain import caller
from optix._tree import has_explicit_axes
from optix._tree import match_layout
from optix.transforms._distribute import distributing

LeafSharding = Callable[[Any, Sharding], Sharding]

__all__ = [
    "constrain_leaf",
    "distribute_matrices",
    "replicated",
    "state_shardings",
    "zero",
    "zero_spec",
]


def _is_array(x: Any) -> bool:
    return x is not None and hasattr(x, "shape") and hasattr(x, "dtype")


def _children(node: Any) -> tuple[list[Any], Any]:
    """The immediate children of a pytree node (``None`` children kept) and its one-level
    treedef."""
    return jax.tree.flatten(node, is_leaf=lambda x: x is not node)


def replicated(mesh: Mesh | AbstractMesh) -> NamedSharding:
    """The sharding that keeps a full copy of a leaf on every device of ``mesh``.

    Example:
      >>> import jax
      >>> from optix.sharding import replicated
      >>> replicated(jax.make_mesh((1,), ("data",))).spec
      P()
    """
    return NamedSharding(mesh, PartitionSpec())


def zero_spec(
    shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh | AbstractMesh, axis: str
) -> PartitionSpec:
    """``spec`` with ``axis`` added to the first dimension it divides evenly (ZeRO-1 layout).

    A dimension already split over other mesh axes takes ``axis`` as well when its size divides by
    the product of all of them. ``spec`` comes back unchanged when ``axis`` is already used, or no
    dimension divides (scalars, odd sizes): such a leaf keeps its layout.

    Example:
      >>> import jax
      >>> from jax.sharding import AbstractMesh, AxisType, PartitionSpec as P
      >>> from optix.sharding import zero_spec
      >>> mesh = AbstractMesh((4,), ("data",), axis_types=(AxisType.Auto,))
      >>> zero_spec((8, 3), P(), mesh, "data"), zero_spec((3,), P(), mesh, "data")
      (P('data',), P())
    """
    entries = list(spec) + [None] * (len(shape) - len(spec))

    def axes_of(entry: Any) -> tuple[str, ...]:
        if entry is None:
            return ()
        return tuple(entry) if isinstance(entry, tuple) else (entry,)

    used = [a for e in entries for a in axes_of(e)]
    if axis in used:
        return spec
    for dim, (size, entry) in enumerate(zip(shape, entries, strict=True)):
        factor = int(np.prod([mesh.shape[a] for a in axes_of(entry)], dtype=np.int64))
        if size % (factor * mesh.shape[axis]) == 0:
            new = axes_of(entry) + (axis,)
            entries[dim] = new[0] if len(new) == 1 else new
            while entries and entries[-1] is None:
                entries.pop()
            return PartitionSpec(*entries)
    return spec


def _match(
    state: Any, params: Any, shardings: Any, fallback: Sharding, leaf_sharding: LeafSharding
) -> Any:
    """The sharding tree of ``state`` if it mirrors ``params`` (``None`` holes allowed), else raise
    ``_NoMatch``."""
    if state is None:
        return None
    if _is_array(params):
        if not _is_array(state):
            raise _NoMatch
        if tuple(state.shape) == tuple(params.shape):
            return leaf_sharding(state, shardings)
        return fallback
    if params is None or _is_array(state):
        raise _NoMatch
    s_children, s_def = _children(state)
    p_children, p_def = _children(params)
    sh_children = p_def.flatten_up_to(shardings) if p_children else []
    if s_def != p_def:
        raise _NoMatch
    out = [
        _match(s, p, sh, fallback, leaf_sharding)
        for s, p, sh in zip(s_children, p_children, sh_children, strict=True)
    ]
    return s_def.unflatten(out)


class _NoMatch(Exception):
    pass


def _walk(
    state: Any, params: Any, shardings: Any, fallback: Sharding, leaf_sharding: LeafSharding
) -> Any:
    """Shardings for every leaf of ``state``: params-shaped subtrees leaf by leaf, others
    replicated."""
    if state is None:
        return None
    if not _is_array(params):
        # A bare-array params tree would match every leaf: only match subtrees for real trees.
        try:
            return _match(state, params, shardings, fallback, leaf_sharding)
        except _NoMatch:
            pass
    if _is_array(state):
        if _is_array(params) and tuple(state.shape) == tuple(params.shape):
            return leaf_sharding(state, shardings)
        return fallback
    children, treedef = _children(state)
    return treedef.unflatten(
        [_walk(c, params, shardings, fallback, leaf_sharding) for c in children]
    )


def constrain_leaf(x: jax.Array, sharding: NamedSharding) -> jax.Array:
    """``x`` laid out as ``sharding``, inside or outside ``jit``: ``jax.sharding.reshard`` on a mesh
    with explicit axes (the default of ``jax.make_mesh``), ``with_sharding_constraint`` otherwise.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from optix.sharding import constrain_leaf, replicated
      >>> mesh = jax.make_mesh((1,), ("data",))
      >>> with jax.set_mesh(mesh):
      ...     y = jax.jit(lambda x: constrain_leaf(x, replicated(mesh)))(jnp.ones(4))
      >>> y.sharding.is_fully_replicated
      True
    """
    if has_explicit_axes(sharding.mesh):
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def _mesh_of(shardings: Any, mesh: Mesh | AbstractMesh | None) -> Mesh | AbstractMesh:
    if mesh is not None:
        return mesh
    for s in jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, Sharding)):
        if isinstance(s, NamedSharding):
            return s.mesh
    raise TypeError(
        "state_shardings: pass `mesh=` (the param shardings hold no NamedSharding to take the mesh "
        "from)."
    )


def state_shardings(
    tx: GradientTransformation,
    params: Any,
    param_shardings: Any = None,
    *,
    mesh: Mesh | None = None,
    zero_axis: str | None = None,
) -> Any:
    """The sharding of every leaf of ``tx.init(params)``, computed without allocating the state.

    Each subtree of the state that mirrors the params tree (moment buffers, accumulators, slow or
    averaged weights, possibly with ``None`` holes left by a mask or a partition) takes the params'
    shardings leaf by leaf, when the shapes agree. Every other leaf (step counts, hyperparameters,
    buffers of another shape) is replicated over the mesh. With ``zero_axis``, params-shaped
    buffers are further split along that mesh axis on their first evenly divisible dimension
    (ZeRO stage 1, see :func:`zero_spec`), so each device holds ``1/N`` of them.

    Args:
      tx: the optimizer.
      params: the params, or a tree of ``jax.ShapeDtypeStruct`` with their shapes and dtypes.
      param_shardings: a tree of shardings shaped like ``params``, or one sharding for all of
        them; by default each param's own ``.sharding``.
      mesh: the mesh replicated leaves live on; by default the mesh of the param shardings.
      zero_axis: a mesh axis to split the buffers over, or ``None``.
    Returns:
      A tree of shardings with the structure of the state (``None`` where the state has ``None``),
      ready for ``jax.jit(..., out_shardings=...)``, ``jax.device_put`` or
      ``jax.lax.with_sharding_constraint``.
    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> from jax.sharding import NamedSharding, PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("data",))
      >>> params = {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}
      >>> shardings = optix.sharding.state_shardings(
      ...     optix.adam(1e-3), params, NamedSharding(mesh, P()), zero_axis="data")
      >>> shardings[0].mu["w"].spec == P("data")
      True
      >>> shardings[0].hyperparams.count.spec == P()
      True
    """
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), params)
    if param_shardings is None:
        param_shardings = jax.tree.map(lambda x: x.sharding, params)
    elif isinstance(param_shardings, Sharding):
        param_shardings = jax.tree.map(lambda _: param_shardings, shapes)
    found = _mesh_of(param_shardings, mesh)
    if zero_axis is not None and zero_axis not in found.shape:
        raise ValueError(
            f"state_shardings: zero_axis={zero_axis!r} is not an axis of the mesh "
            f"{tuple(found.axis_names)}."
        )
    fallback = replicated(found)
    abstract = jax.eval_shape(tx.init, shapes)

    def leaf_sharding(leaf: Any, sharding: Sharding) -> Sharding:
        if zero_axis is None:
            return sharding
        if not isinstance(sharding, NamedSharding):
            sharding = fallback
        spec = zero_spec(tuple(leaf.shape), sharding.spec, sharding.mesh, zero_axis)
        return NamedSharding(sharding.mesh, spec)

    return _walk(abstract, shapes, param_shardings, fallback, leaf_sharding)


def zero(
    tx: GradientTransformation, mesh: Mesh, axis: str = "data", *, split_matrix_work: bool = True
) -> GradientTransformation:
    """``tx`` with its state partitioned over the data-parallel ``axis`` of ``mesh`` (ZeRO-1).

    ``init`` and ``update`` constrain the state to :func:`state_shardings` with ``zero_axis=axis``
    (params taken as replicated), so inside ``jax.jit`` every moment buffer is split over the
    ``axis`` devices and XLA gathers what each step needs. The numbers are those of ``tx``; only the
    layout changes. Use it on replicated (data-parallel) params; for params that are themselves
    sharded, pass ``state_shardings(..., zero_axis=axis)`` to ``jit`` instead.

    With ``split_matrix_work`` (the default), the matrix optimizers inside ``tx`` (Muon, NorMuon,
    Shampoo, SOAP, PSGD Kron) also split their per-matrix work over ``axis``, as
    :func:`distribute_matrices` does: each device orthogonalises or decomposes only its share of
    the matrices, and the results are gathered.

    Args:
      tx: the optimizer.
      mesh: the device mesh.
      axis: the mesh axis the batch is split over.
      split_matrix_work: split the matrix optimizers' per-matrix work over ``axis`` too.
    Returns:
      A transform with the same state structure as ``tx``.
    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> mesh = jax.make_mesh((1,), ("data",))
      >>> tx = optix.sharding.zero(optix.adam(1e-3), mesh)
      >>> state = jax.jit(tx.init)({"w": jnp.zeros((4, 2))})
      >>> state[0].mu["w"].shape
      (4, 2)

    Reference: Rajbhandari et al., `ZeRO: Memory Optimizations Toward Training Trillion Parameter
    Models <https://arxiv.org/abs/1910.02054>`_, SC 2020.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"zero: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if axis not in mesh.shape:
        raise ValueError(
            f"zero: axis={axis!r} is not an axis of the mesh {tuple(mesh.axis_names)}."
        )
    call = caller(tx)
    rep = replicated(mesh)
    explicit = has_explicit_axes(mesh)

    def constrain(state: Any, like: Any) -> Any:
        shardings = state_shardings(tx, like, rep, zero_axis=axis)
        return jax.tree.map(constrain_leaf, state, shardings)

    def init(params):
        return constrain(tx.init(params), params)

    def update(updates, state, params=None, **extra):
        with distributing(mesh, (axis,)) if split_matrix_work else contextlib.nullcontext():
            new_updates, state = call(updates, state, params, extra)
        if explicit:
            # Explicit axes make the layout part of the type: the split state would leave the
            # updates split too, so give them back the layout the gradients came in.
            new_updates = jax.tree.map(match_layout, new_updates, updates)
        return new_updates, constrain(state, new_updates)

    return GradientTransformation(init, update)


def distribute_matrices(
    tx: GradientTransformation, mesh: Mesh, axis: str | tuple[str, ...] | None = None
) -> GradientTransformation:
    r"""``tx`` with the per-matrix work of its matrix optimizers split over the devices of
    ``mesh``: each device computes only the matrices it owns.

    Muon, NorMuon, Shampoo and SOAP see every matrix leaf as a ``(count, rows, cols)`` stack of
    independent matrices (batch indices and blocks included) and run a Newton-Schulz iteration, an
    eigendecomposition or an inverse root on each; PSGD Kron fits the factors of each leaf. Without
    this wrapper every device gathers every matrix and repeats all of that work. Inside ``update``
    (traced in ``jax.jit``) the matrices of one shape are stacked across leaves, the stack is padded
    to a multiple of the number of devices on ``axis`` and split over them on the matrix index, each
    device runs the batched computation on its slice, and the results are gathered, replicated. Each
    matrix is computed exactly as on one device, so the numbers are those of ``tx`` (up to the last
    bits a different batching of the same products may change); the per-device floating-point work
    of the matrices falls to about ``1/N``, for an all-gather of the results.

    Use it for tensor-parallel (sharded) params, or for replicated params whose state stays
    replicated; :func:`zero` already does it for ZeRO. On a mesh with explicit axes the updates
    come back in the gradients' layout and the state in its own. Transforms without matrix work
    are unchanged.

    Args:
      tx: the optimizer.
      mesh: the device mesh.
      axis: the mesh axis (or axes) whose devices share the work; None: every axis of ``mesh``.
    Returns:
      A transform with the same state as ``tx``.
    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> mesh = jax.make_mesh((1,), ("model",))
      >>> tx = optix.sharding.distribute_matrices(optix.muon(0.02), mesh)
      >>> params = {"w": jnp.ones((4, 3))}
      >>> state = tx.init(params)
      >>> with jax.set_mesh(mesh):
      ...     updates, state = jax.jit(tx.update)({"w": jnp.eye(4, 3)}, state, params)
      >>> updates["w"].shape
      (4, 3)

    Reference: Anil et al., `Scalable second order optimization for deep learning
    <https://arxiv.org/abs/2002.09018>`_, 2020 (each preconditioner computed on one device);
    Ahn et al., `Dion: distributed orthonormalized updates <https://arxiv.org/abs/2504.05295>`_,
    2025.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"distribute_matrices: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}."
        )
    axes = tuple(mesh.axis_names) if axis is None else (axis,) if isinstance(axis, str) else axis
    bad = [a for a in axes if a not in mesh.shape]
    if not axes or bad:
        raise ValueError(
            f"distribute_matrices: axis={axis!r} names no axis of the mesh "
            f"{tuple(mesh.axis_names)}."
        )
    call = caller(tx)
    explicit = has_explicit_axes(mesh)

    def update(updates, state, params=None, **extra):
        with distributing(mesh, tuple(axes)):
            new_updates, new_state = call(updates, state, params, extra)
        if explicit:
            # the results come back replicated: give the updates and the state back the layout
            # they came in (the layout is part of the type on explicit axes)
            new_updates = jax.tree.map(match_layout, new_updates, updates)
            new_state = jax.tree.map(match_layout, new_state, state)
        return new_updates, new_state

    return GradientTransformation(tx.init, update)
