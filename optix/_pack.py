"""Packing a pytree of arrays into a few contiguous 1-D buffers, one per dtype, and back.

An optimizer step is elementwise work bounded by memory bandwidth, but a tree of many small leaves
turns it into many small kernels, and every leaf is a buffer that crosses the ``jit`` boundary.
:func:`pack` turns the tree into a :class:`Packed`: a pytree whose children are a few flat
buffers and whose static aux data is the layout (tree structure, shapes, dtypes, offsets).
Elementwise optimizers run on a ``Packed`` directly, and ``jax.grad`` of ``loss(unpack(packed))``
is a ``Packed`` too, so a model can keep its params packed from end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class PackLayout:
    """Where every leaf lives inside the buffers of a :class:`Packed` (hashable, static).

    Attributes:
      treedef: the structure of the packed tree.
      shapes, dtypes: each leaf's shape and dtype name, in flattening order.
      groups: each leaf's buffer index.
      offsets: each leaf's first element in its buffer.
      sizes: the length of each buffer.
      buffer_dtypes: the dtype name of each buffer.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    groups: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    buffer_dtypes: tuple[str, ...]

    @property
    def num_leaves(self) -> int:
        return len(self.shapes)


@jax.tree_util.register_pytree_with_keys_class
class Packed:
    """A pytree packed into a few flat buffers: children ``buffers``, static aux data ``layout``.

    Build one with :func:`pack`, read the tree back with :func:`unpack`. Any function mapped over
    pytree leaves (``jax.tree.map``, an elementwise optimizer, ``optix.apply_updates``) sees only
    the buffers; two ``Packed`` with the same layout line up leaf for leaf.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> packed = optix.pack({"b": jnp.zeros(2), "w": jnp.ones((2, 3))})
      >>> [b.shape for b in packed.buffers]
      [(8,)]
    """

    __slots__ = ("buffers", "layout")

    def __init__(self, buffers: tuple[Any, ...], layout: PackLayout):
        self.buffers = tuple(buffers)
        self.layout = layout

    def tree_flatten_with_keys(self):
        keys = [jax.tree_util.GetAttrKey(f"buffer{i}") for i in range(len(self.buffers))]
        return list(zip(keys, self.buffers, strict=True)), self.layout

    def tree_flatten(self):
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout: PackLayout, buffers: Any) -> Packed:
        return cls(tuple(buffers), layout)

    def unpack(self) -> Any:
        """The tree this was packed from (see :func:`unpack`)."""
        return unpack(self)

    def __repr__(self) -> str:
        bufs = ", ".join(
            f"{d}[{n}]" for d, n in zip(self.layout.buffer_dtypes, self.layout.sizes, strict=True)
        )
        return f"Packed({self.layout.num_leaves} leaves in {bufs})"


def _dtype_name(x: Any) -> str:
    return jnp.dtype(x.dtype).name


def layout_of(
    tree: Any, group_by: Callable[[Any], Hashable] | None = None
) -> tuple[PackLayout, list[Any]]:
    """The layout :func:`pack` gives ``tree`` (leaves may be ``jax.ShapeDtypeStruct``), and the
    leaves in flattening order. Buffers are ordered by first appearance of their group."""
    leaves, treedef = jax.tree.flatten(tree)
    keys: dict[Hashable, int] = {}
    groups: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    buffer_dtypes: list[Any] = []
    for x in leaves:
        key = (_dtype_name(x), None if group_by is None else group_by(x))
        if key not in keys:
            keys[key] = len(sizes)
            sizes.append(0)
            buffer_dtypes.append(key[0])
        g = keys[key]
        groups.append(g)
        offsets.append(sizes[g])
        sizes[g] += int(np.prod(x.shape, dtype=np.int64))
    layout = PackLayout(
        treedef=treedef,
        shapes=tuple(tuple(int(d) for d in x.shape) for x in leaves),
        dtypes=tuple(_dtype_name(x) for x in leaves),
        groups=tuple(groups),
        offsets=tuple(offsets),
        sizes=tuple(sizes),
        buffer_dtypes=tuple(buffer_dtypes),
    )
    return layout, leaves


def pack_like(tree: Any, layout: PackLayout) -> Packed:
    """Pack ``tree`` (structured, shaped and typed as ``layout`` says) into that layout."""
    leaves = layout.treedef.flatten_up_to(tree)
    members: list[list[Any]] = [[] for _ in layout.sizes]
    for x, g, shape, dtype in zip(leaves, layout.groups, layout.shapes, layout.dtypes, strict=True):
        x = jnp.asarray(x)
        if x.shape != shape or x.dtype.name != dtype:
            raise ValueError(
                f"cannot pack a leaf of shape {x.shape} and dtype {x.dtype} where the layout "
                f"has shape {shape} and dtype {dtype}"
            )
        members[g].append(x.reshape(-1))
    buffers = []
    for parts, dtype in zip(members, layout.buffer_dtypes, strict=True):
        if not parts:
            buffers.append(jnp.zeros((0,), dtype))
        elif len(parts) == 1:
            buffers.append(parts[0])
        else:
            buffers.append(jnp.concatenate(parts))
    return Packed(tuple(buffers), layout)


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
    if not isinstance(packed, Packed):
        raise TypeError(f"`unpack` expects a Packed (from optix.pack), got {type(packed).__name__}")
    layout = packed.layout
    leaves = []
    for g, off, shape in zip(layout.groups, layout.offsets, layout.shapes, strict=True):
        buf = packed.buffers[g]
        size = int(np.prod(shape, dtype=np.int64))
        if size == layout.sizes[g]:
            flat = buf
        else:
            flat = jax.lax.slice_in_dim(buf, off, off + size, axis=buf.ndim - 1)
        leaves.append(flat.reshape(buf.shape[:-1] + shape))
    return layout.treedef.unflatten(leaves)
