"""Tree math shared by every transform: per-leaf mapping, moments, norms and dtype handling.

Per-leaf math runs in at least the hyperparameter precision (float32), whatever the dtype of the
leaf, and each transform casts its results back explicitly: updates to the gradient's dtype,
moments to their chosen dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix._validate import stored_dtype


def wider(a: DTypeLike, b: DTypeLike) -> jnp.dtype:
    """The dtype both ``a`` and ``b`` convert to without loss (JAX's standard promotion lattice,
    whatever the user's promotion setting)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.promote_types(a, b)


def compute_dtype(dtype: DTypeLike) -> jnp.dtype:
    """The dtype math on a leaf of ``dtype`` runs in: never below the hyperparameter precision,
    and never a dtype JAX cannot hold (float64 is float32 unless 64-bit mode is on)."""
    return jax.dtypes.canonicalize_dtype(wider(dtype, stored_dtype()))


def leaf_dtype(x: Any) -> jnp.dtype:
    """The dtype a leaf has once it is a JAX array: a Python float is the default float, a NumPy
    float64 array is float32 unless 64-bit mode is on (as ``jnp.asarray`` would make them)."""
    if isinstance(x, jax.Array | jax.ShapeDtypeStruct):
        return jnp.dtype(x.dtype)
    return jnp.result_type(x)


def real_dtype(dtype: DTypeLike) -> jnp.dtype:
    """The real counterpart of ``dtype`` (float32 for complex64), or ``dtype`` itself."""
    return jnp.finfo(dtype).dtype


def state_dtype(param_dtype: DTypeLike, requested: DTypeLike | None = None) -> jnp.dtype:
    """The dtype of a buffer that accumulates a ``param_dtype`` leaf (a sum, an average, slow
    weights): ``requested``, or at least float32 by default; complex leaves keep a complex buffer."""
    if requested is None:
        return compute_dtype(param_dtype)
    if jnp.issubdtype(param_dtype, jnp.complexfloating):
        return wider(requested, jnp.complex64)
    return jnp.dtype(requested)


def check_state_dtype(name: str, dtype: DTypeLike | None) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``dtype`` is None or a float or complex dtype
    (an integer or bool accumulator would truncate the state)."""
    if dtype is None:
        return
    try:
        dt = jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a float dtype, got {dtype!r}") from err
    if not jnp.issubdtype(dt, jnp.inexact):
        raise TypeError(
            f"`{name}` must be a float dtype (for example jnp.float32 or jnp.bfloat16), got {dt}; "
            "an integer or bool accumulator would truncate the optimizer state"
        )


def moments_like(
    tree: Any,
    dtype: DTypeLike | None = None,
    *,
    real: bool = False,
    fill: ArrayLike = 0,
    name: str = "dtype",
) -> Any:
    """Accumulators (moments, traces, sums) shaped like ``tree``: filled with ``fill``, in
    ``dtype`` when given (``name`` is the argument that asked for it), else in at least float32
    (:func:`state_dtype`), so low-precision params never get low-precision accumulators unless
    asked; ``real`` drops complex (for second moments)."""
    check_state_dtype(name, dtype)

    def leaf(x):
        dt = state_dtype(leaf_dtype(x), dtype)
        if real and jnp.issubdtype(dt, jnp.complexfloating):
            dt = real_dtype(dt)
        return jnp.full_like(x, fill, dtype=dt)  # keeps the leaf's sharding

    return jax.tree.map(leaf, tree)


def as_arrays(tree: Any) -> Any:
    """``tree`` with each Python scalar or NumPy leaf made a JAX array (``jnp.asarray``), so
    ``init`` can read ``.dtype`` and ``.shape`` of any leaf; JAX arrays, tracers and
    ``jax.ShapeDtypeStruct`` leaves are kept as they are."""

    def leaf(x):
        return x if isinstance(x, jax.Array | jax.ShapeDtypeStruct) else jnp.asarray(x)

    return jax.tree.map(leaf, tree)


def is_variable(x: Any) -> bool:
    """Whether ``x`` is a flax ``nnx.Variable`` (duck-typed: optix does not import flax)."""
    return hasattr(x, "get_value") and hasattr(x, "get_metadata")


def unwrap_variables(tree: Any) -> Any:
    """``tree`` with each ``nnx.Variable`` replaced by its value.

    A transform whose per-param state is a node (a NamedTuple of block stacks, a tuple of
    accumulators, a quantized array) builds it from unwrapped params: inside a Variable, such a
    node would be stored back by ``nnx.Optimizer`` as a mapping of its fields after the first
    step, a new structure that retraces the jitted step. Param-shaped arrays keep their Variables
    (and so their metadata, such as sharding annotations).
    """
    return jax.tree.map(lambda x: x.get_value() if is_variable(x) else x, tree, is_leaf=is_variable)


def zeros_shaped_like(shapes: Any) -> Any:
    """Zeros with the shapes and dtypes of a tree of ``jax.ShapeDtypeStruct`` (None kept)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def upcast(x: jax.Array) -> jax.Array:
    """``x`` in its :func:`compute_dtype`."""
    return x.astype(compute_dtype(x.dtype))


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|^2``, real for complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def map_leaves(fn: Callable[..., Any], *trees: Any, n_out: int | None = None) -> Any:
    """Apply ``fn`` leaf by leaf over trees shaped like the first one.

    With ``n_out`` set, ``fn`` returns a tuple of that length and the result is a tuple of trees (one
    per output), so a transform can write its per-leaf math as one small function returning
    ``(update, new_mu, new_nu)``. ``None``
    leaves of the first tree are passed through as ``None``. Inside ``fn``, JAX's standard dtype
    promotion applies (a float32 hyperparameter times a bf16 leaf is float32), whatever the user's
    promotion setting; ``fn`` casts its outputs explicitly.
    """
    leaves, treedef = jax.tree.flatten(trees[0])
    rest = [treedef.flatten_up_to(t) for t in trees[1:]]
    with jax.numpy_dtype_promotion("standard"):
        outs = [fn(*args) for args in zip(leaves, *rest, strict=True)]
    if n_out is None:
        return treedef.unflatten(outs)
    cols = list(zip(*outs, strict=True)) if outs else [()] * n_out
    return tuple(treedef.unflatten(list(col)) for col in cols)


def zeros_like(tree: Any, dtype: DTypeLike | None = None, *, real: bool = False) -> Any:
    """Zeros shaped like ``tree``; ``dtype`` overrides each leaf's dtype; ``real`` drops complex."""

    def leaf(x):
        dt = jnp.dtype(dtype) if dtype is not None else leaf_dtype(x)
        if real and jnp.issubdtype(dt, jnp.complexfloating):
            dt = real_dtype(dt)
        elif dtype is not None and jnp.issubdtype(leaf_dtype(x), jnp.complexfloating) and not real:
            dt = wider(dt, jnp.complex64)
        return jnp.zeros_like(x, dtype=dt)  # keeps the leaf's sharding

    return jax.tree.map(leaf, tree)


def full_like(
    tree: Any, value: ArrayLike, dtype: DTypeLike | None = None, *, real: bool = False
) -> Any:
    """Like :func:`zeros_like`, filled with ``value``."""
    return jax.tree.map(lambda z: jnp.full_like(z, value), zeros_like(tree, dtype, real=real))


@jax.custom_jvp
def sqrt_flat_at_zero(x: jax.Array) -> jax.Array:
    """``sqrt(x)``, whose derivative at ``x = 0`` is 0 instead of infinite (so differentiating
    through clipping an all-zero gradient, or a second moment of an all-zero gradient
    coordinate, gives 0, not NaN). The value is jnp.sqrt's, bit for bit."""
    return jnp.sqrt(x)


@sqrt_flat_at_zero.defjvp
def _sqrt_flat_at_zero_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = jnp.sqrt(x)
    positive = x > 0
    return y, jnp.where(positive, dx / (2 * jnp.where(positive, y, 1)), 0)


def _norm_sq(x: jax.Array) -> jax.Array:
    """``|x|^2`` for a norm, written ``|x| |x|`` (the same bits as ``x * x``). XLA's simplifier
    turns it back into ``x * x`` (jax 0.10), which common-subexpression elimination then merges
    with an optimizer's own ``g * g``; :func:`optix.monitor` keeps its squares apart itself."""
    if jnp.iscomplexobj(x):
        return abs_sq(x)
    magnitude = jnp.abs(x)
    return magnitude * magnitude


def sq_norm(x: jax.Array) -> jax.Array:
    """``sum |x_i|^2`` over one leaf, accumulated in at least float32."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.sum(_norm_sq(upcast(x)))


def global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, accumulated in at least float32 (NaN when a leaf holds
    a NaN)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros([], stored_dtype())
    return norm_of_sq_norms([sq_norm(x) for x in leaves])


def norm_of_sq_norms(sq_norms: list[jax.Array]) -> jax.Array:
    """The L2 norm of leaves whose :func:`sq_norm` are ``sq_norms`` (0 for none)."""
    if not sq_norms:
        return jnp.zeros([], stored_dtype())
    with jax.numpy_dtype_promotion("standard"):
        total = sum(sq_norms)
    # The sum of per-leaf sums goes straight into the root and nowhere else: XLA copies a chain of
    # cheap scalar ops into every consumer, so a compare on ``total`` read by each leaf's update
    # would copy the whole n-leaf sum into n kernels (compile time quadratic in the leaf count).
    # A square root is not copied.
    return sqrt_flat_at_zero(total)


def has_explicit_axes(mesh: Any) -> bool:
    """Whether ``mesh`` (or None) has an axis of type ``Explicit``: there the layout of an array
    is part of its type, so arrays laid out differently must be resharded before they mix."""
    return jax.sharding.AxisType.Explicit in getattr(mesh, "axis_types", ())


def _explicit_sharding(x: jax.Array) -> Any:
    """The sharding of ``x`` when it lies on a mesh with explicit axes, else None."""
    sharding = jax.typeof(x).sharding
    return sharding if has_explicit_axes(getattr(sharding, "mesh", None)) else None


def match_layout(x: jax.Array, like: jax.Array) -> jax.Array:
    """``x`` laid out like ``like`` over a mesh with explicit axes (where the layout is part of
    the type, so params replicated and state split by ZeRO do not mix in a select or a scatter);
    ``x`` unchanged otherwise."""
    target = _explicit_sharding(like)
    if target is not None and getattr(jax.typeof(x).sharding, "spec", None) != target.spec:
        return jax.sharding.reshard(x, target.spec)
    return x


def unsplit(x: jax.Array) -> jax.Array:
    """``x`` whole on every device when a mesh with explicit axes splits it (matrix math such as
    ``x @ x.T`` cannot keep one mesh axis on both dimensions); ``x`` unchanged otherwise."""
    sharding = _explicit_sharding(x)
    if sharding is not None and any(a is not None for a in sharding.spec):
        return jax.sharding.reshard(x, jax.sharding.PartitionSpec())
    return x


def where(flag: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """``jnp.where(flag, x, y)`` with ``x`` laid out like ``y`` (see :func:`match_layout`)."""
    return jnp.where(flag, match_layout(x, y), y)


def cast_tree(tree: Any, like: Any) -> Any:
    """``tree`` with each leaf cast to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)


def bias_correction(decay: jax.Array, count: jax.Array) -> jax.Array:
    """``1 - decay**count``: the weight a zero-initialised running mean has gathered after
    ``count`` updates, in the hyperparameter precision."""
    return 1 - decay ** count.astype(decay.dtype)


def tree_inner(a: Any, b: Any) -> jax.Array:
    """``Re <a, b> = Re sum(conj(a) * b)`` over all leaves, in the hyperparameter precision (or
    wider). Complex leaves count as pairs of real coordinates."""
    dtype = jnp.dtype(stored_dtype())
    total = jnp.zeros([], dtype)
    with jax.numpy_dtype_promotion("standard"):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            x, y = upcast(x), upcast(y)
            part = jnp.real(jnp.sum(jnp.conj(x) * y)) if jnp.iscomplexobj(x) else jnp.sum(x * y)
            total = total + part
    return total
