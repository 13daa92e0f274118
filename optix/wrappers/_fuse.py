"""Fused multi-tensor updates: run an elementwise optimizer as a few large kernels."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax

from optix import _tree, _validate
from optix._base import GradientTransformation, OptState
from optix._chain import caller, check_transform
from optix._fusable import is_elementwise
from optix._pack import Packed, layout_mismatch, pack, pack_like, unpack


class FuseState(NamedTuple):
    """State of :func:`fuse`: the inner optimizer's state, built on packed buffers when fused."""

    inner: OptState


def _state_layout(state: Any) -> Any:
    """The layout of the first packed tree in ``state`` (None when nothing in it is packed)."""
    for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, Packed)):
        if isinstance(node, Packed):
            return node.layout
    return None


def fuse(
    tx: GradientTransformation,
    *,
    strict: bool = False,
    group_by: Callable[[Any], Hashable] | None = None,
) -> GradientTransformation:
    """Run ``tx`` on a few packed buffers (one per dtype) instead of leaf by leaf.

    Each step packs the updates (and params) with :func:`optix.pack`, runs ``tx`` on the buffers,
    and unpacks the result; the state of ``tx`` lives packed, so it holds a few large arrays
    instead of one array per leaf per moment. The result equals ``tx`` run unfused, up to float
    rounding (a global norm summed in a different order).

    Only an *elementwise* ``tx`` can be fused: Adam and its family, momentum, RMSprop, Adagrad,
    AdaDelta, sign, scaling, ``clip``, ``clip_by_global_norm`` (a global norm is the same on packed
    buffers), ``add_decayed_weights`` without a mask, and any :func:`optix.chain` of these.
    Per-leaf statistics (trust ratios, per-leaf norms), shape-dependent math (factored or matrix
    preconditioners), path-dependent wrappers (partition, masks) and per-leaf random keys are not
    elementwise; for such a ``tx``, ``fuse`` runs it leaf by leaf, unchanged, so the result is
    exact by construction (``strict=True`` raises instead).

    Leaves are packed in the dtype the math runs in (:func:`optix._tree.compute_dtype`: at least
    float32), so bf16 and float32 leaves share a buffer, bf16 params take float32 gradients and
    NumPy or Python-float leaves work, as they do unfused; each update comes back in its
    gradient's dtype.

    Updates and params that arrive already packed (a :class:`optix.Packed`) are used as they are
    and the updates come back packed; then ``fuse`` is not needed at all: any elementwise
    optimizer runs on a ``Packed`` directly.

    When to use it (measured with ``benchmarks/run.py``, see ``benchmarks/RESULTS.md``): on trees
    of hundreds of small leaves a fused step is several times faster than the unfused one, but it
    does not compile faster, because packing the gradients and unpacking the updates of every leaf
    is itself part of the step. Models that keep their params packed (:func:`optix.pack`) gain
    the most, in step and compile time alike. On a single array or a few large leaves fusion gains
    nothing and costs an extra copy of the gradients and updates. Fusion is therefore not the
    default.

    Args:
      tx: the optimizer to fuse.
      strict: raise ``ValueError`` if ``tx`` is not known to be elementwise, instead of running it
        unfused.
      group_by: passed to :func:`optix.pack` (for example, to keep leaves with different shardings
        in different buffers).

    Returns:
      A :class:`GradientTransformation` with state :class:`FuseState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = {f"layer{i}": jnp.ones(4) for i in range(100)}
      >>> tx = optix.fuse(optix.adamw(1e-3, weight_decay=1e-2))
      >>> state = tx.init(params)
      >>> len(state.inner[0].mu.buffers)  # one buffer for all 100 leaves
      1
      >>> updates, state = tx.update(params, state, params)
      >>> optix.get_hyperparams(state)["learning_rate"].dtype
      dtype('float32')
    """
    check_transform(tx, "`fuse` argument")
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

    def widened(tree: Any) -> Any:
        """Each leaf as a JAX array in its compute dtype (lossless: never narrower)."""
        return jax.tree.map(lambda x: x.astype(_tree.compute_dtype(x.dtype)), _tree.as_arrays(tree))

    def to_packed(tree: Any) -> Packed:
        if isinstance(tree, Packed):
            return tree
        return pack(widened(tree), group_by=group_by)

    def init(params):
        if not fused:
            return FuseState(tx.init(params))
        if not isinstance(params, Packed):
            _validate.check_float_leaves(params, "`fuse` params")
        return FuseState(tx.init(to_packed(params)))

    def update(updates, state, params=None, **extra):
        if not isinstance(state, FuseState):
            raise ValueError(
                "`fuse` got a state that is not a FuseState; was it built by its init?"
            )
        if not fused:
            updates, inner = call(updates, state.inner, params, extra)
            return updates, FuseState(inner)
        already = isinstance(updates, Packed)
        if not already:  # checked here, so messages name the user's paths, not the buffers
            _validate.check_float_leaves(updates, "`fuse` updates")
            if params is not None and not isinstance(params, Packed):
                _validate.check_same_structure(updates, params, "updates", "params")
        packed = to_packed(updates)
        built = _state_layout(state.inner)
        problem = built and layout_mismatch(
            packed.layout, built, "updates", "the params the `fuse` state was built from"
        )
        if problem:
            raise ValueError(f"`fuse`: {problem}; was the state built by init on these params?")
        if params is not None and not isinstance(params, Packed):
            params = pack_like(widened(params), packed.layout, what="params")
        packed, inner = call(packed, state.inner, params, extra)
        if already:
            return packed, FuseState(inner)
        out = _tree.cast_tree(unpack(packed), _tree.as_arrays(updates))  # the gradients' dtypes
        return out, FuseState(inner)

    return GradientTransformation(init, update)
