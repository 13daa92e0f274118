"""Fused multi-tensor updates: run an elementwise optimizer on the small leaves as a few large
kernels, and on the large leaves as they are."""

from __future__ import annotations

import operator
from collections.abc import Callable
from collections.abc import Hashable
from typing import Any
from typing import NamedTuple

import jax

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix._fusable import is_elementwise
from optix._pack import Packed
from optix._pack import PackLayout
from optix._pack import layout_mismatch
from optix._pack import layout_of
from optix._pack import pack_like
from optix._pack import unpack_sharing_kernels
from optix._paths import is_nnx_variable

PACK_BELOW = 4096
"""Default of :func:`fuse`'s ``pack_below``: leaves with fewer elements are packed. Measured with
``benchmarks/fuse_threshold.py`` (2M float32 params in equal leaves, Adam, 2-core CPU): packing
every leaf takes 0.77x the unfused step at 1,024 elements per leaf, 0.90x at 2,048, 1.00x at
4,096 and 1.22x at 8,192, where copying the leaf into the buffer and its update out of it costs
more than the kernel launches it saves."""


class FuseState(NamedTuple):
    """State of :func:`fuse`: the inner optimizer's state, built on packed buffers when fused."""

    inner: OptState


def _state_layout(state: Any) -> PackLayout | None:
    """The layout of the first packed tree in ``state`` (None when nothing in it is packed)."""
    for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, Packed)):
        if isinstance(node, Packed):
            return node.layout
    return None


def _value(x: Any) -> Any:
    """An nnx ``Variable`` as the array it holds (``nnx.Optimizer`` inits on Variables and
    updates on bare arrays, so the layout is built on the arrays); anything else as it is."""
    if is_nnx_variable(x):
        (x,) = jax.tree.leaves(x)
    return x


def fuse(
    tx: GradientTransformation,
    *,
    pack_below: int | None = PACK_BELOW,
    strict: bool = False,
    group_by: Callable[[Any], Hashable] | None = None,
) -> GradientTransformation:
    r"""Run ``tx`` on the small leaves packed into a few buffers, and on the large leaves as they are.

    An optimizer step on a tree of many small leaves is dominated by the cost of launching one
    kernel (or several) per leaf, not by the arithmetic. ``fuse`` packs every leaf of fewer than
    ``pack_below`` elements into one flat buffer per dtype (:func:`optix.pack`), runs ``tx`` on
    the buffers and on the remaining large leaves, and slices each small leaf's update back out.
    The state of ``tx`` lives packed in the same way: a few large arrays for all small leaves, one
    array per large leaf, so it stays a pytree of arrays that checkpoints like any other. A large
    leaf is updated exactly as ``tx`` would update it unfused: copying it into a buffer would cost
    more memory traffic than the launch it saves.

    The result equals ``tx`` run unfused, up to float rounding (a global norm summed in a
    different order). Only an *elementwise* ``tx`` can be fused: Adam and its family, momentum,
    RMSprop, Adagrad, AdaDelta, sign, scaling, ``clip``, ``clip_by_global_norm`` (a global norm is
    the same over buffers and leaves), ``add_decayed_weights`` without a mask, and any
    :func:`optix.chain` of these. Per-leaf statistics (trust ratios, per-leaf norms),
    shape-dependent math (factored or matrix preconditioners), path-dependent wrappers (partition,
    masks) and per-leaf random keys are not elementwise; for such a ``tx``, ``fuse`` runs it leaf
    by leaf, unchanged, so the result is exact by construction (``strict=True`` raises instead).

    Small leaves are packed in the dtype the math runs in (at least float32), so bf16 and float32
    leaves share a buffer, bf16 params take float32 gradients and NumPy or Python-float leaves
    work, as they do unfused; each update comes back in its gradient's dtype. Params and
    gradients held in flax nnx ``Variable`` s (``nnx.Optimizer``) are read as their arrays.

    Updates and params that arrive already packed (a :class:`optix.Packed`) are used as they are
    and the updates come back packed; then ``fuse`` is not needed at all: any elementwise
    optimizer runs on a ``Packed`` directly.

    When it pays (``benchmarks/fuse_threshold.py``, Adam, busy 2-core CPU): on 400 leaves of 8 to
    128x128 elements the fused step took 0.70x optax's time and compiled in 0.29x (1203 kernels
    per step down to 555); packing every leaf (``pack_below=None``) 0.69x and 0.16x. On trees of
    large leaves (GPT-2's weights, one flat array) only the leaves below ``pack_below`` (biases,
    norm scales) are packed, and the large ones step as unfused. The updates are sliced out of
    the buffers at offsets read at run time, so leaves of one shape share a compiled kernel; but
    every updated leaf is an output of its own, so a fused step still compiles one small kernel
    per leaf shape.

    Args:
      tx: the optimizer to fuse.
      pack_below: leaves with fewer elements than this are packed; larger ones are updated as
        they are. ``None`` packs every leaf, ``0`` none.
      strict: raise ``ValueError`` if ``tx`` is not known to be elementwise, instead of running it
        unfused.
      group_by: passed to :func:`optix.pack` for the small leaves (for example, to keep leaves
        with different shardings in different buffers).

    Returns:
      A :class:`GradientTransformation` with state :class:`FuseState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {f"layer{i}": jnp.ones(4) for i in range(100)}
      >>> params["embed"] = jnp.ones((1000, 64))
      >>> tx = optix.fuse(optix.adamw(1e-3, weight_decay=1e-2))
      >>> state = tx.init(params)
      >>> state.inner[0].mu  # the 100 small leaves in one buffer, the large one kept
      Packed(100 leaves in float32[400], 1 kept as they are)
      >>> updates, state = tx.update(params, state, params)
      >>> updates["embed"].shape
      (1000, 64)
    """
    check_transform(tx, "`fuse` argument")
    if pack_below is not None:
        try:
            pack_below = operator.index(pack_below)
        except TypeError:
            raise TypeError(
                f"`fuse` pack_below must be an int or None, got {type(pack_below).__name__}"
            ) from None
        if pack_below < 0:
            raise ValueError(f"`fuse` pack_below must be >= 0, got {pack_below}")
    fused = is_elementwise(tx)
    if strict and not fused:
        raise ValueError(
            "`fuse(..., strict=True)`: the transform is not known to be elementwise, so running it "
            "on packed buffers could change its result (per-leaf norms or trust ratios, "
            "shape-dependent math such as factored moments, path-based masks or labels, or "
            "per-leaf random keys). Fuse only elementwise transforms, or drop strict=True to run "
            "it leaf by leaf; a new elementwise transform is declared with "
            "`optix._fusable.mark_elementwise`."
        )
    call = caller(tx)

    def kept(x: Any) -> bool:
        return pack_below is not None and x.size >= pack_below

    def plain(tree: Any) -> Any:
        """Each leaf as a JAX array, nnx Variables read as their arrays."""
        return _tree.as_arrays(jax.tree.map(_value, tree, is_leaf=is_nnx_variable))

    def widened(tree: Any) -> Any:
        """Each leaf to be packed in its compute dtype (lossless: never narrower)."""
        return jax.tree.map(
            lambda x: x if kept(x) else x.astype(_tree.compute_dtype(x.dtype)), tree
        )

    def layout(tree: Any) -> PackLayout:
        """The layout of a plain ``tree``; a kept leaf is laid out in its compute dtype too, so
        that bf16 params and their float32 gradients get the same layout."""

        def leaf(x):
            if kept(x):
                return jax.ShapeDtypeStruct(x.shape, _tree.compute_dtype(x.dtype))
            return x

        return layout_of(jax.tree.map(leaf, widened(tree)), group_by, pack_below)[0]

    def packed_like(tree: Any, lay: PackLayout, what: str) -> Packed:
        return pack_like(widened(tree), lay, what=what, kept_dtypes=False)

    def init(params):
        if not fused or isinstance(params, Packed):
            return FuseState(tx.init(params))
        params = plain(params)
        _validate.check_float_leaves(params, "`fuse` params")
        return FuseState(tx.init(packed_like(params, layout(params), "params")))

    def update(updates, state, params=None, **extra):
        if not isinstance(state, FuseState):
            raise ValueError(
                "`fuse` got a state that is not a FuseState; was it built by its init?"
            )
        if not fused:
            updates, inner = call(updates, state.inner, params, extra)
            return updates, FuseState(inner)
        already = isinstance(updates, Packed)
        if params is not None and not isinstance(params, Packed):
            params = plain(params)
        if already:
            packed = updates
        else:  # checked here, so messages name the user's paths, not the buffers
            updates = plain(updates)
            _validate.check_float_leaves(updates, "`fuse` updates")
            if params is not None and not isinstance(params, Packed):
                _validate.check_same_structure(updates, params, "updates", "params")
            packed = packed_like(updates, layout(updates), "updates")
        built = _state_layout(state.inner)
        problem = built and layout_mismatch(
            packed.layout, built, "updates", "the params the `fuse` state was built from"
        )
        if problem:
            raise ValueError(f"`fuse`: {problem}; was the state built by init on these params?")
        if params is not None and not isinstance(params, Packed):
            params = packed_like(params, packed.layout, "params")
        packed, inner = call(packed, state.inner, params, extra)
        if already:
            return packed, FuseState(inner)
        out = unpack_sharing_kernels(packed)
        return _tree.cast_tree(out, updates), FuseState(inner)  # the gradients' dtypes

    return GradientTransformation(init, update)
