r"""The matrix work of a step, split over the devices of a mesh axis: each device computes only the
matrices it owns, and the results are gathered.

Muon, Shampoo and SOAP view every leaf as a ``(count, rows, cols)`` stack of independent matrices
(:class:`~optix.transforms._matrix_spec.MatrixLayout`, blocks included) and run an iteration or a
decomposition on each. Under data parallelism (ZeRO) or tensor parallelism every device would gather
every matrix and repeat all of that work. :func:`map_matrices` is the one place the matrix
optimizers hand that work to: with no distribution in force (the default) it runs each job as it is,
the single-device program unchanged; inside :func:`distributing` it stacks the jobs of one shape,
pads the stack to a multiple of the axis size, splits it over the axis on the matrix index, runs the
batched computation on each device's slice (``jax.shard_map``, so decompositions that are custom
calls stay local too) and gathers the results, replicated. Each matrix's numbers are the same either
way, since the jobs treat their matrices independently. Work written for one item (PSGD Kron's
factor fit of a leaf) goes through :func:`map_each`, which batches the items with ``jax.vmap``
when it splits them. :func:`optix.sharding.zero` and
:func:`optix.sharding.distribute_matrices` set the distribution while the wrapped ``update`` is
traced.

Reference: Anil et al., `Scalable second order optimization for deep learning
<https://arxiv.org/abs/2002.09018>`_, 2020 (preconditioners computed on the devices that own
them); Ahn et al., `Dion: distributed orthonormalized updates <https://arxiv.org/abs/2504.05295>`_,
2025.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from optix._tree import has_explicit_axes


class Distribution(NamedTuple):
    """The mesh and the axes (one or several of its axes) whose devices share the matrix work."""

    mesh: Mesh
    axes: tuple[str, ...]

    @property
    def size(self) -> int:
        """The number of devices the work is split over."""
        return math.prod(self.mesh.shape[a] for a in self.axes)


_CURRENT: contextvars.ContextVar[Distribution | None] = contextvars.ContextVar(
    "optix_matrix_distribution", default=None
)


@contextlib.contextmanager
def distributing(mesh: Mesh, axes: tuple[str, ...]) -> Iterator[None]:
    """While tracing inside this context, :func:`map_matrices` splits its work over ``axes``."""
    token = _CURRENT.set(Distribution(mesh, axes))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _signature(key: Hashable, arrays: Any) -> Hashable:
    leaves, treedef = jax.tree.flatten(arrays)
    return key, treedef, tuple((tuple(x.shape[1:]), jnp.dtype(x.dtype)) for x in leaves)


def map_matrices(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Hashable, Any]],
    consts: tuple[Any, ...] = (),
) -> list[Any]:
    """``[fn(key, arrays, *consts) for key, arrays in jobs]``, with the work split over the devices
    of the :func:`distributing` context when one is in force.

    Every array of a job's ``arrays`` (a pytree) has the same leading length, the number of its
    matrices, and ``fn`` must treat those matrices independently, returning a pytree of arrays
    with the same leading length. ``key`` (hashable) holds the static choices that change
    ``fn``'s program; jobs of equal key, structure, trailing shapes and dtypes are computed as one
    stack. ``fn`` must not close over traced values: pass them in ``consts`` (replicated to every
    device; ``shard_map`` cannot close over values laid out on explicit mesh axes).
    """
    dist = _CURRENT.get()
    if dist is None or dist.size == 1 or not jobs:
        return [fn(key, arrays, *consts) for key, arrays in jobs]
    groups: dict[Hashable, list[int]] = {}
    for i, (key, arrays) in enumerate(jobs):
        groups.setdefault(_signature(key, arrays), []).append(i)
    results: list[Any] = [None] * len(jobs)
    whole = NamedSharding(dist.mesh, PartitionSpec())
    for members in groups.values():
        key = jobs[members[0]][0]
        parts = [jobs[i][1] for i in members]
        counts = [jax.tree.leaves(p)[0].shape[0] for p in parts]
        if len(parts) > 1 and has_explicit_axes(dist.mesh):
            # explicit axes type the layout: the parts are made whole (alike) to be joined
            parts = jax.tree.map(lambda x: _constrain(x, whole), parts)
        stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
        out = _split_work(dist, lambda a, *c, key=key: fn(key, a, *c), stacked, consts)
        start = 0
        for i, n in zip(members, counts, strict=True):
            results[i] = jax.tree.map(lambda y, s=start, n=n: y[s : s + n], out)
            start += n
    return results


def _split_work(dist: Distribution, fn: Callable[..., Any], arrays: Any, consts: tuple) -> Any:
    """``fn(arrays, *consts)`` with the leading (matrix) axis of ``arrays`` split over the
    devices of ``dist``: padded to a multiple of their number with copies of its first matrices
    (real inputs, so no decomposition meets a degenerate one), each device running ``fn`` on its
    own slice (``shard_map``: custom calls such as ``eigh`` stay local too), and the results
    gathered, replicated, without the padding."""
    count = jax.tree.leaves(arrays)[0].shape[0]
    padded = -(-count // dist.size) * dist.size
    if padded != count:
        index = jnp.arange(padded) % count
        arrays = jax.tree.map(lambda x: x[index], arrays)
    split = NamedSharding(dist.mesh, PartitionSpec(dist.axes))
    whole = NamedSharding(dist.mesh, PartitionSpec())
    arrays = jax.tree.map(lambda x: _constrain(x, split), arrays)
    consts = jax.tree.map(lambda x: _constrain(jnp.asarray(x), whole), consts)
    out = jax.shard_map(
        lambda a, c: fn(a, *c),
        mesh=dist.mesh,
        in_specs=(split.spec, whole.spec),
        out_specs=split.spec,
    )(arrays, consts)
    return jax.tree.map(lambda y: _constrain(y, whole)[:count], out)


def _constrain(x: jax.Array, sharding: NamedSharding) -> jax.Array:
    """``x`` laid out as ``sharding``: a reshard on explicit mesh axes, a constraint otherwise."""
    if has_explicit_axes(sharding.mesh):
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def map_stacks(
    fn: Callable[..., jax.Array], stacks: Sequence[jax.Array | None], consts: tuple[Any, ...] = ()
) -> list[jax.Array | None]:
    """``fn(stack, *consts)`` for each stack that is not None (None stays None), through
    :func:`map_matrices`: one program for every stack, such as an orthogonaliser."""
    jobs = [(None, s) for s in stacks if s is not None]
    done = iter(map_matrices(lambda _, s, *c: fn(s, *c), jobs, consts))
    return [None if s is None else next(done) for s in stacks]


def map_each(
    fn: Callable[..., Any], jobs: Sequence[tuple[Hashable, Any]], consts: tuple[Any, ...] = ()
) -> list[Any]:
    """``[fn(key, arrays, *consts) for key, arrays in jobs]`` for an ``fn`` written for one item
    (its ``arrays`` without a leading matrix axis, Python scalars allowed): under a distribution,
    the items of one key and shape are batched with ``jax.vmap`` and split over the devices by
    :func:`map_matrices`; otherwise each is called as it is."""
    if _CURRENT.get() is None:
        return [fn(key, arrays, *consts) for key, arrays in jobs]

    def batched(key, arrays, *c):
        return jax.vmap(lambda a: fn(key, a, *c))(arrays)

    lead = [(key, jax.tree.map(lambda x: jnp.asarray(x)[None], arrays)) for key, arrays in jobs]
    return [jax.tree.map(lambda y: y[0], out) for out in map_matrices(batched, lead, consts)]


def map_leaf_jobs(
    prepare: Callable[..., tuple[list[tuple[Hashable, Any]], Any]],
    fn: Callable[..., Any],
    finish: Callable[[Any, list[Any]], tuple[Any, ...]],
    consts: tuple[Any, ...],
    tree: Any,
    *rest: Any,
) -> tuple[Any, ...]:
    """A matrix optimizer's step over a tree, leaf by leaf around one :func:`map_matrices`:
    ``prepare(leaf, *rest_leaves)`` gives a leaf's jobs and a context, ``fn`` runs every job of
    every leaf (split over devices under :func:`distributing`), ``finish(context, results)`` gives
    the leaf's outputs (a tuple); returned as one tree per output, shaped like ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    others = [treedef.flatten_up_to(t) for t in rest]
    with jax.numpy_dtype_promotion("standard"):
        prepared = [prepare(*args) for args in zip(leaves, *others, strict=True)]
        jobs = [job for leaf_jobs, _ in prepared for job in leaf_jobs]
        done = iter(map_matrices(fn, jobs, consts))
        finished = [finish(ctx, [next(done) for _ in leaf_jobs]) for leaf_jobs, ctx in prepared]
    return tuple(treedef.unflatten(list(col)) for col in zip(*finished, strict=True))
