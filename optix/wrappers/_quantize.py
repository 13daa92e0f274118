"""8-bit and 4-bit optimizer state: any optimizer's param-shaped state, stored quantized."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Collection
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optix import _keypath
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import HyperparamState
from optix._quantize_maps import PACKED_BITS
from optix._quantize_maps import dequantize
from optix._quantize_maps import dequantize_packed
from optix._quantize_maps import dynamic_map
from optix._quantize_maps import quantize
from optix._quantize_maps import quantize_packed

# State fields that hold moments: running averages or sums of gradients or of their squares, which
# tolerate a relative rounding of the state (8-bit optimizers). Only these are quantized. Copies of
# the params (averages of the trajectory, slow weights, anchors, the initial point), the previous
# gradient, step sizes and gradient-accumulation sums stay exact: rounding them moves the
# params or the step itself (an EMA of weights near 1.0 rounded to 8 bits is off by ~0.01).
QUANTIZED_FIELDS: frozenset[str] = frozenset(
    {
        "mu",  # first moments (adam family, adabelief, adopt, amsgrad, ...)
        "nu",  # second moments
        "nu_max",  # amsgrad's running max of nu
        "trace",  # momentum traces (sgd, lars, rmsprop's momentum)
        "sum_of_squares",  # adagrad
        "e_g",  # adadelta's moments
        "e_x",
        "m1",  # ademamix's two first moments
        "m2",
        "delta",  # adan's moment of gradient differences
        "v",  # adafactor's unfactored second moment
        "s",  # prodigy's and D-Adaptation's weighted gradient sums
    }
)

# State fields known to hold non-negative values (second moments, accumulated squares, maxima of
# magnitudes): their leaves use the unsigned map, which has one more bit of magnitude. Any other
# field uses the signed map, which is always correct.
UNSIGNED_FIELDS: frozenset[str] = frozenset(
    {"nu", "nu_max", "sum_of_squares", "e_g", "e_x", "v", "exp_avg_sq", "max_exp_avg_sq"}
)


@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """One state array stored quantized: a pytree of ``codes`` and ``scale``.

    Attributes:
      codes: uint8 codes. At ``bits > 4`` shaped like the array they stand for (one byte per
        element); at ``bits <= 4`` packed two per byte, a flat array of ``ceil(size / 2)`` bytes
        (element ``2 k`` in the low four bits of byte ``k``).
      scale: float32 normalisers: the absmax of each block of ``block_size`` consecutive elements
        (of the array flattened), ``ceil(size / block_size)`` of them; or, for a packed unsigned
        array of two or more dimensions (rank-1 normalisation), the absmax of each slice along
        each axis, concatenated axis by axis (``sum(shape)`` of them).
      dtype, signed, bits, block_size, shape: static (part of the tree structure, not arrays): the
        dtype and shape the array reads back in, which map it uses, and the layout.
    """

    codes: jax.Array
    scale: jax.Array
    dtype: Any = dataclasses.field(metadata={"static": True})
    signed: bool = dataclasses.field(metadata={"static": True})
    bits: int = dataclasses.field(metadata={"static": True})
    block_size: int = dataclasses.field(metadata={"static": True})
    shape: tuple[int, ...] | None = dataclasses.field(default=None, metadata={"static": True})

    @property
    def packed(self) -> bool:
        """Whether the codes are packed two per byte (``bits <= 4``)."""
        return self.bits <= PACKED_BITS

    @classmethod
    def create(cls, x: jax.Array, *, signed: bool, bits: int, block_size: int) -> QuantizedArray:
        """Quantize a real array ``x``."""
        shape = tuple(int(n) for n in x.shape)
        if bits <= PACKED_BITS:
            codes, scale = quantize_packed(x, bits, signed, block_size)
        else:
            codes, scale = quantize(x, bits, signed, block_size)
        return cls(codes, scale, jnp.dtype(x.dtype), signed, bits, block_size, shape)

    def requantize(self, x: jax.Array) -> QuantizedArray:
        """``x`` quantized with this array's layout."""
        return QuantizedArray.create(
            x.astype(self.dtype), signed=self.signed, bits=self.bits, block_size=self.block_size
        )

    def dequantize(self) -> jax.Array:
        """The array these codes stand for, in :attr:`dtype`."""
        if self.packed:
            shape = self.shape if self.shape is not None else self.codes.shape
            return dequantize_packed(
                self.codes, self.scale, self.bits, self.signed, self.block_size, shape, self.dtype
            )
        return dequantize(
            self.codes, self.scale, self.bits, self.signed, self.block_size, self.dtype
        )


jax.tree_util.register_dataclass(QuantizedArray)


def _stop(x: Any) -> bool:
    return isinstance(x, QuantizedArray | HyperparamState)


class QuantizedState(NamedTuple):
    """State of :func:`quantize_state`: the inner state with its large param-shaped float arrays
    replaced by :class:`QuantizedArray` nodes."""

    inner_state: OptState  # the wrapped transform's state, partly quantized


def _param_shapes(params: Any) -> dict[tuple, tuple[int, ...]]:
    return {tuple(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_leaves_with_path(params)}


def _field(path: tuple, shape: tuple, param_shapes: dict) -> str | None:
    """The name of the state field above the param-shaped subtree holding this leaf ("" at the
    root), or None when no param path ends the leaf's path with this shape."""
    for k in range(len(path), -1, -1):
        if param_shapes.get(tuple(path[len(path) - k :])) == shape:
            return _keypath.key_str(path[len(path) - k - 1]) if len(path) > k else ""
    return None


def _field_predicate(
    name: str, spec: Collection[str] | Callable[[str], bool]
) -> Callable[[str, str], bool]:
    """``(field, path) -> bool`` from a collection of field names or a predicate on the path."""
    if callable(spec):
        return lambda field, path: bool(spec(path))
    if isinstance(spec, str):
        raise TypeError(f"`{name}` must be a collection of field names or a function, not a str")
    names = frozenset(spec)
    return lambda field, path: field in names


def quantize_state(
    inner: GradientTransformation,
    bits: int = 8,
    block_size: int | None = None,
    min_size: int = 4096,
    *,
    unsigned: Collection[str] | Callable[[str], bool] = UNSIGNED_FIELDS,
    fields: Collection[str] | Callable[[str], bool] = QUANTIZED_FIELDS,
) -> GradientTransformation:
    r"""Keep ``inner``'s param-shaped state quantized (8-bit and 4-bit optimizers).

    .. math::
        s = \max_{i \in B} |x_i|, \qquad c_i = \arg\min_j |q_j - x_i / s|, \qquad
        \tilde x_i = q_{c_i} s

    for each block :math:`B` of ``block_size`` consecutive elements, with :math:`q` a dynamic
    tree quantization map (:func:`optix._quantize_maps.dynamic_map`: a decade exponent and a
    linear fraction, so small values keep their relative precision). Each update dequantizes the
    state, runs ``inner.update`` on it in full precision (the step itself uses the exact new
    moments) and requantizes the new state. 8-bit Adam keeps ``2 * (1 + 4 / block_size)`` bytes
    per parameter instead of 8.

    4 bits (``bits <= 4``), after Li, Chen & Zhu (2023): codes are packed two per byte (element
    :math:`2k` in the low four bits of byte :math:`k`, the last high nibble 0 for an odd size),
    ``block_size`` defaults to 128 (the paper's block for the first moment), and unsigned leaves
    (second moments) change both map and normalisation. A dynamic map holds a zero, and a small
    second moment rounded to it makes Adam's step :math:`m / (\sqrt{v} + \epsilon)` explode (the
    paper's zero-point problem), so unsigned leaves use the linear map without zero,

    .. math::
        q_j = \frac{j + 1}{2^b}, \quad j = 0, \dots, 2^b - 1, \qquad
        \tilde x_i = q_{c_i} N_i \ge N_i / 2^b > 0 \text{ whenever } N_i > 0,

    and, for leaves of two or more dimensions, rank-1 normalisation: each element is divided by
    the smallest of the absmax of the slices through it, for a matrix
    :math:`N_{ij} = \min(\max_k |x_{ik}|, \max_k |x_{kj}|)` (``sum(shape)`` float32 scales per
    leaf instead of one per block; one-dimensional leaves keep block-wise absmax). Signed leaves
    (first moments) keep the block-wise signed dynamic map at 4 bits. 4-bit Adam thus keeps
    :math:`\tfrac12 + 4 / \text{block\_size}` bytes for ``mu`` and about :math:`\tfrac12` for a
    matrix's ``nu`` (1.055 bytes per parameter for a 512 x 256 matrix) instead of 8. Taken from
    the paper: the 4-bit dynamic map and 128-element blocks for first moments, the zero-free linear
    map and rank-1 normalisation for second moments, small leaves (``min_size``) kept in full
    precision. Not taken: the factorized second moment (``4-bit Factor``; :func:`optix.adafactor`
    factors it already) and any special treatment of embedding layers. With round-to-nearest a
    4-bit first moment can lag (a decay by 10 % mostly rounds back to the same code): on a
    full-batch teacher-student regression driven below its noise floor the final loss was 2.2x
    fp32's, while on the digits MLP and a ridge regression it was within 0.2 %
    (``benchmarks/quantize_4bit.py``).
    Widths 5 to 7 are stored one byte per code with the coarser dynamic maps.

    Which leaves are quantized, decided at ``init`` and fixed in the state's structure: float
    leaves of at least ``min_size`` elements whose path ends with a param's path, whose shape is
    that param's shape, and whose state field (the name above that param-shaped subtree) holds
    moments: one of ``fields``, by default :data:`QUANTIZED_FIELDS` (``mu``, ``nu``, ``nu_max``,
    ``trace``, ``sum_of_squares``, ``e_g``, ``e_x``, ``m1``, ``m2``, ``delta``, ``v``, ``s``).
    Only moments tolerate the rounding. Every other param-shaped field is kept exact, among them
    the copies of the params: :func:`optix.param_ema`'s ``ema``, :func:`optix.swa`'s ``mean``,
    :func:`optix.lookahead`'s ``slow``, :func:`optix.schedule_free`'s ``z``, :func:`optix.sam`'s
    ``cache``, :func:`optix.prodigy`'s ``params0`` and :func:`optix.scale_by_lbfgs`'s
    ``prev_params``, and also L-BFGS's ``prev_updates`` and Adan's and Rprop's ``prev_grad`` (read
    in gradient differences), Rprop's ``step_sizes`` and :func:`optix.accumulate`'s ``acc``.
    Rounding a param copy to 8 bits moves the params (an average of weights near 1.0 would be off
    by up to 0.01, a schedule-free ``z`` stalls training). Everything else also stays as it is:
    hyperparameters and counters, small
    leaves, integer and complex leaves, factored statistics and other leaves not shaped like a
    param. Each quantized leaf reads back in its own dtype (``mu_dtype`` and ``nu_dtype`` still
    apply).

    Signed or unsigned map: a leaf uses the unsigned map (no sign bit, so twice the resolution)
    when the state field holding its param-shaped subtree is named in ``unsigned`` (by default
    :data:`UNSIGNED_FIELDS`: ``nu``, ``nu_max``, ``sum_of_squares``, ``e_g``, ``e_x``, ...), and the
    signed map otherwise, which is correct for any values. ``unsigned`` may instead be a function
    of the leaf's full state path (``"0/nu/w"``) returning True for unsigned leaves. Negative
    values in an unsigned leaf are stored as 0 (at 4 bits: as the smallest code), and positive
    ones never are: at 8 bits values below the
    map's smallest magnitude (``1e-7`` of the block's absmax at 8 bits) round up to it, since a
    second moment rounded to 0 would make Adam's next step for that element jump (``m / eps``
    sized at first). This roughly halved the one loss spike 8-bit Adam shows on the digits MLP
    benchmark (``benchmarks/quantized_state.py``); coarse rounding of second moments in the low
    decades of the map can still enlarge single steps.

    NaN and infinity: a non-finite value in a state leaf makes its whole block read back as NaN
    (the block's scale is stored as NaN); other blocks are unaffected. Under rank-1 normalisation
    the slices through it (for a matrix, its row and its column) read back as NaN. Wrap the
    result in :func:`optix.skip_nonfinite` to keep non-finite gradients out of the state.

    The state is a pytree of arrays (:class:`QuantizedArray` holds ``codes`` and
    ``scale``; dtype, shape and layout are static), so it works under ``jit``, ``lax.scan``,
    ``lax.cond``, ``vmap`` and ``jax.eval_shape``, checkpoints exactly, and
    :func:`optix.get_hyperparams` / :func:`optix.set_hyperparams` reach the inner
    hyperparameters unchanged.

    Args:
      inner: the optimizer whose state to quantize.
      bits: code width, 2 to 8; 4 or fewer packs two codes per byte (see above).
      block_size: elements per block (one float32 scale each), an int >= 1; by default 256, or
        128 at ``bits <= 4``.
      min_size: leaves with fewer elements stay in full precision, an int >= 0.
      unsigned: field names, or a predicate on the leaf's state path, selecting the unsigned map.
      fields: the state fields to quantize (names, or a predicate on the leaf's state path such
        as ``"0/mu/w"``); param-shaped leaves of other fields stay exact. Add the moment fields
        of your own transforms here.

    Returns:
      A :class:`GradientTransformation` whose state is a :class:`QuantizedState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.quantize_state(optix.adam(1e-3), min_size=256)
      >>> state = tx.init({"w": jnp.zeros((64, 64)), "b": jnp.zeros(64)})
      >>> adam = state.inner_state[0]
      >>> adam.mu["w"].codes.dtype, adam.mu["w"].scale.shape, adam.mu["b"].dtype
      (dtype('uint8'), (16,), dtype('float32'))
      >>> updates, state = tx.update({"w": jnp.ones((64, 64)), "b": jnp.ones(64)}, state)
      >>> updates["w"][0, :2]
      Array([-0.001, -0.001], dtype=float32)
      >>> tx4 = optix.quantize_state(optix.adam(1e-3), bits=4, min_size=256)
      >>> adam4 = tx4.init({"w": jnp.zeros((64, 64))}).inner_state[0]
      >>> adam4.mu["w"].codes.shape, adam4.mu["w"].scale.shape, adam4.nu["w"].scale.shape
      ((2048,), (32,), (128,))

    References: Dettmers, Lewis, Shleifer & Zettlemoyer, `8-bit Optimizers via Block-wise
    Quantization <https://arxiv.org/abs/2110.02861>`_, ICLR 2022. Li, Chen & Zhu, `Memory
    Efficient Optimizers with 4-bit States <https://arxiv.org/abs/2309.01507>`_, NeurIPS 2023.
    """
    check_transform(inner, "`inner`")
    dynamic_map(bits)  # validates bits
    if block_size is None:
        block_size = 128 if bits <= PACKED_BITS else 256
    _validate.check_int("block_size", block_size, minimum=1)
    _validate.check_int("min_size", min_size, minimum=0)
    bits, block_size, min_size = int(bits), int(block_size), int(min_size)
    is_unsigned = _field_predicate("unsigned", unsigned)
    is_quantized = _field_predicate("fields", fields)
    call_inner = caller(inner)

    def store(path: tuple, leaf: Any, param_shapes: dict) -> Any:
        if isinstance(leaf, HyperparamState) or not hasattr(leaf, "dtype"):
            return leaf
        if not jnp.issubdtype(leaf.dtype, jnp.floating) or int(np.size(leaf)) < min_size:
            return leaf
        field = _field(path, tuple(leaf.shape), param_shapes)
        if field is None or not is_quantized(field, _keypath.path_str(path)):
            return leaf
        signed = not is_unsigned(field, _keypath.path_str(path))
        return QuantizedArray.create(leaf, signed=signed, bits=bits, block_size=block_size)

    def init(params):
        inner_state = inner.init(params)
        shapes = _param_shapes(_tree.unwrap_variables(params))  # nnx: paths without `.value`
        # an nnx.Variable is a leaf here: a quantized array replaces the whole Variable, never
        # sits inside one (see _tree.unwrap_variables)
        stop = lambda x: _stop(x) or _tree.is_variable(x)  # noqa: E731
        pairs, treedef = jax.tree_util.tree_flatten_with_path(inner_state, is_leaf=stop)
        stored = []
        for path, leaf in pairs:
            value = leaf.get_value() if _tree.is_variable(leaf) else leaf
            kept = store(path, value, shapes)
            stored.append(kept if isinstance(kept, QuantizedArray) else leaf)
        return QuantizedState(treedef.unflatten(stored))

    def update(updates, state, params=None, **extra):
        if not isinstance(state, QuantizedState):
            raise ValueError(
                f"`quantize_state` expected a QuantizedState, got {type(state).__name__}; was it "
                "built by this transform's init?"
            )
        stored, treedef = jax.tree.flatten(state.inner_state, is_leaf=_stop)
        full = [x.dequantize() if isinstance(x, QuantizedArray) else x for x in stored]
        updates, new_inner = call_inner(updates, treedef.unflatten(full), params, extra)
        new = treedef.flatten_up_to(new_inner)
        requantized = [
            old.requantize(x) if isinstance(old, QuantizedArray) else x
            for old, x in zip(stored, new, strict=True)
        ]
        return updates, QuantizedState(treedef.unflatten(requantized))

    return GradientTransformation(init, update)
