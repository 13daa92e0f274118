"""Packing a pytree of arrays into a few contiguous 1-D buffers, one per dtype, and back.

An optimizer step is elementwise work bounded by memory bandwidth, but a tree of many small leaves
turns it into many small kernels, and every leaf is a buffer that crosses the ``jit`` boundary.
:func:`pack` turns the tree into a :class:`Packed`: a pytree whose children are a few flat
buffers and whose static aux data is the layout (tree structure, shapes, dtypes, offsets).
Elementwise optimizers run on a ``Packed`` directly, and ``jax.grad`` of ``loss(unpack(packed))``
is a ``Packed`` too, so a model can keep its params packed from end to end.

A layout may also *keep* some leaves (:func:`optix.fuse` keeps the large ones): a kept leaf is
not copied into a buffer but carried as a child of its own, so a function mapped over the
``Packed`` sees the buffers and then the kept leaves, each as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optix._keypath import path_str


@dataclass(frozen=True)
class PackLayout:
    """Where every leaf lives inside the buffers of a :class:`Packed` (hashable, static).

    Attributes:
      treedef: the structure of the packed tree.
      shapes, dtypes: each leaf's shape and dtype name, in flattening order (for a kept leaf, the
        dtype it was laid out with; the leaf itself may be given in another, see :func:`pack_like`).
      groups: each leaf's buffer index (-1 for a kept leaf).
      offsets: each leaf's first element in its buffer (0 for a kept leaf).
      sizes: the length of each buffer.
      buffer_dtypes: the dtype name of each buffer.
      kept: the indices of the kept leaves, carried as they are after the buffers.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    groups: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    buffer_dtypes: tuple[str, ...]
    kept: tuple[int, ...] = ()

    @property
    def num_leaves(self) -> int:
        return len(self.shapes)


@jax.tree_util.register_pytree_with_keys_class
class Packed:
    """A pytree packed into a few flat buffers: children ``buffers`` (then ``kept``, the leaves
    the layout keeps as they are, if any), static aux data ``layout``.

    Build one with :func:`pack`, read the tree back with :func:`unpack`. Any function mapped over
    pytree leaves (``jax.tree.map``, an elementwise optimizer, ``optix.apply_updates``) sees only
    the buffers and kept leaves; two ``Packed`` with the same layout line up leaf for leaf.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> packed = optix.pack({"b": jnp.zeros(2), "w": jnp.ones((2, 3))})
      >>> [b.shape for b in packed.buffers]
      [(8,)]
    """

    __slots__ = ("buffers", "kept", "layout")

    def __init__(self, buffers: tuple[Any, ...], layout: PackLayout, kept: tuple[Any, ...] = ()):
        self.buffers = tuple(buffers)
        self.kept = tuple(kept)
        self.layout = layout

    def tree_flatten_with_keys(self):
        keys = [jax.tree_util.GetAttrKey(f"buffer{i}") for i in range(len(self.buffers))]
        keys += [jax.tree_util.GetAttrKey(f"leaf{i}") for i in self.layout.kept]
        return list(zip(keys, self.buffers + self.kept, strict=True)), self.layout

    def tree_flatten(self):
        return self.buffers + self.kept, self.layout

    @classmethod
    def tree_unflatten(cls, layout: PackLayout, children: Any) -> Packed:
        children = tuple(children)
        n = len(layout.sizes)
        return cls(children[:n], layout, children[n:])

    def unpack(self) -> Any:
        """The tree this was packed from (see :func:`unpack`)."""
        return unpack(self)

    def __repr__(self) -> str:
        lay = self.layout
        bufs = ", ".join(f"{d}[{n}]" for d, n in zip(lay.buffer_dtypes, lay.sizes, strict=True))
        kept = f", {len(lay.kept)} kept as they are" if lay.kept else ""
        return f"Packed({lay.num_leaves - len(lay.kept)} leaves in {bufs or 'no buffer'}{kept})"


def _dtype_name(x: Any) -> str:
    """The dtype ``x`` has as a JAX array (a Python float: the default float; NumPy float64:
    float32 unless 64-bit mode is on)."""
    if isinstance(x, jax.Array | jax.ShapeDtypeStruct):
        return jnp.dtype(x.dtype).name
    return jnp.result_type(x).name


def _leaf_paths(layout: PackLayout) -> list[str]:
    """The path of each leaf of ``layout``'s tree, as the user would write it."""
    skeleton = layout.treedef.unflatten(list(range(layout.num_leaves)))
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(skeleton)[0]]


def layout_mismatch(layout: PackLayout, expected: PackLayout, what: str, expected_what: str) -> str:
    """Why a tree packed as ``layout`` (``what``) does not line up with one packed as
    ``expected``, naming the first differing leaf by its path; "" when the layouts are equal."""
    if layout == expected:
        return ""

    def leaves(lay: PackLayout) -> dict[str, tuple]:
        return dict(zip(_leaf_paths(lay), zip(lay.shapes, lay.dtypes, strict=True), strict=True))

    mine, theirs = leaves(layout), leaves(expected)
    for path in mine:
        if path not in theirs:
            return f"'{path}' is in {what} but not in {expected_what}"
    for path in theirs:
        if path not in mine:
            return f"'{path}' is in {expected_what} but not in {what}"
    for path, (shape, dtype) in mine.items():
        if (shape, dtype) != theirs[path]:
            return (
                f"{what} leaf '{path}' has shape {shape} and dtype {dtype} but {expected_what} "
                f"has shape {theirs[path][0]} and dtype {theirs[path][1]} there"
            )
    if list(mine) != list(theirs) or layout.treedef != expected.treedef:
        return f"{what} and {expected_what} have the same leaves in different tree structures"
    return f"{what} is packed into different buffers than {expected_what} (another `group_by`?)"


def layout_of(
    tree: Any,
    group_by: Callable[[Any], Hashable] | None = None,
    pack_below: int | None = None,
) -> tuple[PackLayout, list[Any]]:
    """The layout :func:`pack` gives ``tree`` (leaves may be ``jax.ShapeDtypeStruct``), and the
    leaves in flattening order. Buffers are ordered by first appearance of their group. With
    ``pack_below``, leaves of at least that many elements are kept as they are."""
    leaves, treedef = jax.tree.flatten(tree)
    keys: dict[Hashable, int] = {}
    groups: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    buffer_dtypes: list[Any] = []
    kept: list[int] = []
    for i, x in enumerate(leaves):
        if pack_below is not None and int(np.prod(np.shape(x), dtype=np.int64)) >= pack_below:
            kept.append(i)
            groups.append(-1)
            offsets.append(0)
            continue
        key = (_dtype_name(x), None if group_by is None else group_by(x))
        if key not in keys:
            keys[key] = len(sizes)
            sizes.append(0)
            buffer_dtypes.append(key[0])
        g = keys[key]
        groups.append(g)
        offsets.append(sizes[g])
        sizes[g] += int(np.prod(np.shape(x), dtype=np.int64))
    layout = PackLayout(
        treedef=treedef,
        shapes=tuple(tuple(int(d) for d in np.shape(x)) for x in leaves),
        dtypes=tuple(_dtype_name(x) for x in leaves),
        groups=tuple(groups),
        offsets=tuple(offsets),
        sizes=tuple(sizes),
        buffer_dtypes=tuple(buffer_dtypes),
        kept=tuple(kept),
    )
    return layout, leaves


def pack_like(
    tree: Any, layout: PackLayout, *, what: str = "tree", kept_dtypes: bool = True
) -> Packed:
    """Pack ``tree`` (structured, shaped and typed as ``layout`` says) into that layout;
    ``what`` names ``tree`` in error messages. With ``kept_dtypes=False`` a kept leaf may have
    any dtype (only its shape is checked): it is carried, never copied into a buffer."""
    try:
        leaves = layout.treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"cannot pack {what}: its structure is not that of the packed tree ({err})"
        ) from None
    members: list[list[Any]] = [[] for _ in layout.sizes]
    kept = []
    for i, (x, g) in enumerate(zip(leaves, layout.groups, strict=True)):
        x = jnp.asarray(x)
        shape, dtype = layout.shapes[i], layout.dtypes[i]
        if x.shape != shape or (x.dtype.name != dtype and (g >= 0 or kept_dtypes)):
            raise ValueError(
                f"cannot pack {what} leaf '{_leaf_paths(layout)[i]}' of shape {x.shape} and "
                f"dtype {x.dtype} where the packed tree has shape {shape} and dtype {dtype}"
            )
        if g < 0:
            kept.append(x)
        else:
            members[g].append(x.reshape(-1))
    buffers = []
    for parts, dtype in zip(members, layout.buffer_dtypes, strict=True):
        if not parts:
            buffers.append(jnp.zeros((0,), dtype))
        elif len(parts) == 1:
            buffers.append(parts[0])
        else:
            buffers.append(jnp.concatenate(parts))
    return Packed(tuple(buffers), layout, tuple(kept))


def pack(tree: Any, *, group_by: Callable[[Any], Hashable] | None = None) -> Packed:
    """Pack the leaves of ``tree`` into one contiguous 1-D buffer per dtype.

    Leaves of one dtype are laid end to end in flattening order, so bf16 and float32 leaves land
    in different buffers and keep their dtypes. The result is a pytree whose children are the
    buffers; the layout is static aux data, so a ``Packed`` passes through ``jit``, ``grad``,
    ``scan`` and ``cond``. A ``Packed`` given to ``pack`` is returned as it is.

    Args:
      tree: a pytree of arrays (``None`` leaves are dropped, as ``jax.tree`` does).
      group_by: optional ``leaf -> hashable``: leaves are grouped by ``(dtype, group_by(leaf))``
        instead of by dtype alone, for example to keep leaves with different shardings apart.
        It must depend only on what is static (shape, dtype, sharding), so that the same tree
        always gets the same layout.

    Returns:
      A :class:`Packed`.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> params = optix.pack({"w": jnp.ones((2, 2)), "b": jnp.zeros(2)})
      >>> loss = lambda packed: jnp.sum(optix.unpack(packed)["w"] ** 2)
      >>> grads = jax.grad(loss)(params)  # a Packed, like params
      >>> tx = optix.adam(1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optix.apply_updates(params, updates)
      >>> optix.unpack(params)["w"].shape
      (2, 2)
    """
    if isinstance(tree, Packed):
        return tree
    layout, _ = layout_of(tree, group_by)
    return pack_like(tree, layout)


def unpack(packed: Packed) -> Any:
    """The tree that :func:`pack` packed: each leaf sliced out of its buffer and reshaped.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.unpack(optix.pack({"a": jnp.arange(3.0)}))
      {'a': Array([0., 1., 2.], dtype=float32)}
    """
    return _unpack(packed, shared_kernels=False)


def unpack_sharing_kernels(packed: Packed) -> Any:
    """:func:`unpack`, with each leaf's offset in its buffer a value known only at run time.

    A static slice bakes its offset into its compiled kernel, so XLA compiles one kernel per leaf,
    and a tree of hundreds of leaves of a few shapes compiles hundreds of kernels where an
    unfused step compiles a few. Read at run time, the offset is an operand, and leaves of one
    shape share one kernel. The offsets pass through a ``lax.cond`` whose two branches return the
    same constants, which XLA does not fold; were it ever to, the offsets would be constants
    again and the result the same.
    """
    return _unpack(packed, shared_kernels=True)


def _unpack(packed: Packed, shared_kernels: bool) -> Any:
    if not isinstance(packed, Packed):
        raise TypeError(f"`unpack` expects a Packed (from optix.pack), got {type(packed).__name__}")
    layout = packed.layout
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in layout.shapes]
    sliced = [
        i for i, g in enumerate(layout.groups) if g >= 0 and sizes[i] < layout.sizes[g]
    ]  # the leaves that are part of a buffer (a leaf alone in its buffer is the buffer)
    starts: dict[int, Any] = {i: layout.offsets[i] for i in sliced}
    filled = [b for b in packed.buffers if b.shape[-1] > 0]
    if shared_kernels and len(sliced) > 1 and filled and max(layout.sizes) < 2**31:
        x = filled[0][(0,) * filled[0].ndim]  # any run-time value: both branches are the same
        constants = lambda: tuple(np.int32(starts[i]) for i in sliced)  # noqa: E731
        starts = dict(zip(sliced, jax.lax.cond(x == x, constants, constants), strict=True))
    leaves = []
    kept = iter(packed.kept)
    for i, (g, shape) in enumerate(zip(layout.groups, layout.shapes, strict=True)):
        if g < 0:
            leaves.append(next(kept))
            continue
        buf = packed.buffers[g]
        if i not in starts:
            flat = buf
        elif isinstance(starts[i], int):
            flat = jax.lax.slice_in_dim(buf, starts[i], starts[i] + sizes[i], axis=buf.ndim - 1)
        else:
            flat = jax.lax.dynamic_slice_in_dim(buf, starts[i], sizes[i], axis=buf.ndim - 1)
        leaves.append(flat.reshape(buf.shape[:-1] + shape))
    return layout.treedef.unflatten(leaves)


# ---- path resolution through the layout (used by optix._paths for masks and labels) ------------


def _skeleton(packed: Packed) -> Any:
    """The tree ``packed`` was packed from, with ``jax.ShapeDtypeStruct`` leaves."""
    layout = packed.layout
    leaves = [jax.ShapeDtypeStruct(s, d) for s, d in zip(layout.shapes, layout.dtypes, strict=True)]
    return layout.treedef.unflatten(leaves)


def _buffer_value(values: list, sizes: list[int], total: int, where: str, elementwise: bool) -> Any:
    """One value for a buffer whose leaves (in order, of ``sizes`` elements) got ``values``,
    a list of ``(path, value)``."""
    flags = [bool(v) if isinstance(v, np.bool_) else v for _, v in values]
    if all(type(f) is type(flags[0]) and f == flags[0] for f in flags):
        return flags[0]
    if not elementwise or not all(isinstance(f, bool | np.bool_) for f in flags):
        first = values[0]
        other = next(v for v in values if v[1] != first[1])
        raise ValueError(
            f"{where}: the packed buffer holds '{first[0]}' ({first[1]!r}) and '{other[0]}' "
            f"({other[1]!r}), but a buffer is one leaf to this transform. Pack each group on its "
            "own (for example `{'decay': optix.pack(a), 'no_decay': optix.pack(b)}`) or run it "
            "on the unpacked params"
        )
    return jnp.repeat(jnp.asarray(flags, bool), np.asarray(sizes), total_repeat_length=total)


def expanded(tree: Any) -> tuple[Any, Callable[[list, str, bool], list]]:
    """``tree`` with every :class:`Packed` node replaced by the tree it was packed from (leaves
    ``jax.ShapeDtypeStruct``), and ``collapse(values, what, elementwise)``, which turns one
    ``(path, value)`` per leaf of that expanded tree into one value per leaf of ``tree``.

    A packed buffer takes the value shared by all its leaves; when they differ it takes, if
    ``elementwise`` and the values are bools, a bool array with one flag per element, and is
    otherwise an error that names two leaves and says what to do.
    """

    def is_packed(x):
        return isinstance(x, Packed)

    items, treedef = jax.tree.flatten(tree, is_leaf=is_packed)
    plan = [x.layout if is_packed(x) else None for x in items]
    new = treedef.unflatten([_skeleton(x) if is_packed(x) else x for x in items])

    def collapse(values: list, what: str, elementwise: bool) -> list:
        out, it = [], iter(values)
        for layout in plan:
            if layout is None:
                out.append(next(it)[1])
                continue
            mine = [next(it) for _ in range(layout.num_leaves)]
            for g, total in enumerate(layout.sizes):
                members = [i for i, gi in enumerate(layout.groups) if gi == g]
                sizes = [int(np.prod(layout.shapes[i], dtype=np.int64)) for i in members]
                picked = [mine[i] for i in members]
                out.append(_buffer_value(picked, sizes, total, what, elementwise))
            out.extend(mine[i][1] for i in layout.kept)
        return out

    return new, collapse
