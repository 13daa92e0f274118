r"""Per-example gradient clipping, the step before adding noise in differentially private SGD."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optix import _tree
from optix import _validate
from optix._keypath import path_str


def _check_batched(grads: Any, what: str) -> int:
    """The common batch size on axis 0 of every leaf of ``grads``; raises naming a bad leaf."""
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    if not leaves:
        raise ValueError(f"`{what}` got no gradient leaves")
    _validate.check_float_leaves(grads, f"`{what}` grads")
    batch: int | None = None
    for path, g in leaves:
        shape = jnp.shape(g)
        if len(shape) < 1 or (batch is not None and shape[0] != batch):
            raise ValueError(
                f"`{what}` expects every leaf to hold one gradient per example along axis 0 "
                f"(batch size {batch}); leaf '{path_str(path)}' has shape {shape}"
            )
        batch = shape[0]
    assert batch is not None  # there is at least one leaf
    return batch


def _clip_leaf_sum(g: jax.Array, factor: jax.Array) -> jax.Array:
    """``sum_i factor_i g_i`` over the batch axis, in at least float32, in ``g``'s dtype."""
    gc = _tree.upcast(g)
    return jnp.tensordot(factor.astype(gc.dtype), gc, axes=1).astype(g.dtype)


def _factors(norms: jax.Array, clip: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Per-example multipliers ``min(1, clip / norm)`` and the number of clipped examples."""
    clip = jnp.asarray(clip, norms.dtype)
    clipped = norms > clip  # false for an all-zero example, so no 0/0
    factor = jnp.where(clipped, clip / jnp.where(clipped, norms, 1), 1)
    return factor, jnp.sum(clipped, dtype=jnp.int32)


def _example_norms(leaves: list[jax.Array]) -> jax.Array:
    """The L2 norm of each example's gradient over ``leaves``, in at least float32."""
    per_leaf = [
        jnp.sum(_tree.abs_sq(_tree.upcast(g)).reshape(g.shape[0], -1), axis=1) for g in leaves
    ]
    return jnp.sqrt(sum(per_leaf[1:], per_leaf[0]))


def per_example_global_norm_clip(grads: Any, l2_norm_clip: ArrayLike) -> tuple[Any, jax.Array]:
    r"""Clip each example's gradient to global L2 norm ``l2_norm_clip``, then sum over examples.

    .. math:: \bar g = \sum_i g_i \min\Big(1, \frac{C}{\lVert g_i \rVert_2}\Big)

    with ``g_i`` example ``i``'s gradient (slice ``i`` of axis 0 of every leaf) and its norm taken
    over all leaves together. A function, not a transform, as optax's
    ``per_example_global_norm_clip``: it reduces the batch axis away.

    Args:
      grads: a tree whose leaves all have the batch on axis 0 (from ``jax.vmap(jax.grad(...))``).
      l2_norm_clip: ``C`` >= 0.

    Returns:
      ``(summed, num_clipped)``: the sum of the clipped gradients (leaves without the batch axis,
      in their dtypes) and the int32 number of examples whose norm exceeded ``C``.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> grads = [jnp.array([[0.0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
      >>> optix.per_example_global_norm_clip(grads, 1.25)
      ([Array([1.75, 1.75, 1.75], dtype=float32)], Array(3, dtype=int32))

    Reference: Abadi et al., `Deep learning with differential privacy
    <https://arxiv.org/abs/1607.00133>`_, CCS 2016, Algorithm 1.
    """
    _validate.check_nonnegative("l2_norm_clip", l2_norm_clip)
    _check_batched(grads, "per_example_global_norm_clip")
    leaves, treedef = jax.tree.flatten(grads)
    with jax.numpy_dtype_promotion("standard"):
        factor, num_clipped = _factors(_example_norms(leaves), l2_norm_clip)
        summed = [_clip_leaf_sum(g, factor) for g in leaves]
    return treedef.unflatten(summed), num_clipped


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: ArrayLike, uniform: bool = True
) -> tuple[Any, Any]:
    r"""Clip each example's gradient leaf by leaf (layer by layer), then sum over examples.

    .. math:: \bar g^{(k)} = \sum_i g_i^{(k)} \min\Big(1, \frac{C_k}{\lVert g_i^{(k)} \rVert_2}\Big),
        \qquad C_k = \begin{cases} C / \sqrt{K} & \text{uniform} \\
        C \sqrt{D_k / D} & \text{otherwise} \end{cases}

    for leaf ``k`` of ``K``, with ``D_k`` the size of one example's gradient in leaf ``k`` and
    ``D`` their total: either way ``sum_k C_k^2 = C^2``, so the whole clipped gradient has norm at
    most ``C``, as optax's ``per_example_layer_norm_clip``.

    Args:
      grads: a tree whose leaves all have the batch on axis 0.
      global_l2_norm_clip: ``C`` >= 0.
      uniform: the same bound for every leaf, or bounds proportional to the leaves' sizes.

    Returns:
      ``(summed, num_clipped)``: trees shaped like ``grads`` (without the batch axis) of the summed
      clipped gradients and of each leaf's int32 number of clipped examples.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> grads = {"a": jnp.array([[3.0, 4.0], [0.3, 0.4]]), "b": jnp.array([[1.0], [0.0]])}
      >>> summed, clipped = optix.per_example_layer_norm_clip(grads, 2.0**0.5)  # C_k = 1
      >>> summed["a"], clipped["a"], clipped["b"]
      (Array([0.90000004, 1.2       ], dtype=float32), Array(1, dtype=int32), Array(0, dtype=int32))

    Reference: McMahan, Ramage, Talwar & Zhang, `Learning differentially private recurrent
    language models <https://arxiv.org/abs/1710.06963>`_, ICLR 2018.
    """
    _validate.check_nonnegative("global_l2_norm_clip", global_l2_norm_clip)
    _check_batched(grads, "per_example_layer_norm_clip")
    leaves, treedef = jax.tree.flatten(grads)
    sizes = [int(jnp.size(g)) // g.shape[0] for g in leaves]
    total = sum(sizes)
    summed, counts = [], []
    with jax.numpy_dtype_promotion("standard"):
        for g, size in zip(leaves, sizes, strict=True):
            share = 1 / len(leaves) if uniform else size / total
            factor, n = _factors(_example_norms([g]), global_l2_norm_clip * share**0.5)
            summed.append(_clip_leaf_sum(g, factor))
            counts.append(n)
    return treedef.unflatten(summed), treedef.unflatten(counts)
