"""Dynamic (non-linear) quantization maps and block-wise absmax quantization of one array.

A quantization map is a sorted table of ``2**bits`` (unsigned) or ``2**bits - 1`` (signed) values
in ``[-1, 1]``. A block of an array is stored as one float32 scale, its largest magnitude, and one
code per element: the index of the map value nearest to ``x / scale``.

The maps follow the *dynamic tree* layout of Dettmers et al. (2022): after the sign bit (signed
maps only), the number of leading zero bits ``e`` selects the decade ``10**-e``, the first one bit
is an indicator, and the remaining ``k - 1 - e`` bits (``k`` magnitude bits) are a linear fraction
in ``(0.1, 1]``. Large magnitudes thus get fine linear steps and small ones a wide exponent range:
an 8-bit signed map reaches down to ``1e-6`` of the block's absmax, an unsigned one to ``1e-7``.
The fractions here are the upper ends of equal sub-intervals of ``(0.1, 1]``, so ``0`` and ``+-1``
are exact codes and every decade's values are distinct. In a signed map the bit pattern for
``-0`` is unused: the table has ``2**bits - 1`` entries.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.cache
def _magnitudes(magnitude_bits: int) -> tuple[float, ...]:
    values = []
    for e in range(magnitude_bits):
        steps = 2 ** (magnitude_bits - 1 - e)
        fractions = 0.1 + 0.9 * np.arange(1, steps + 1) / steps
        values.extend((10.0**-e) * fractions)
    return tuple(sorted(values))


def dynamic_map(bits: int = 8, *, signed: bool = True) -> np.ndarray:
    """The sorted float32 table of a ``bits``-bit dynamic tree quantization map.

    Args:
      bits: code width, 2 to 8.
      signed: a map over ``[-1, 1]`` (first moments) or over ``[0, 1]`` (second moments, which
        then gain one more bit of magnitude).

    Returns:
      A strictly increasing float32 array of ``2**bits - 1`` (signed) or ``2**bits`` values,
      holding exactly ``0`` and ``1`` (and ``-1`` when signed).
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 2 <= bits <= 8:
        raise ValueError(f"`bits` must be an integer from 2 to 8, got {bits!r}")
    mags = np.asarray(_magnitudes(int(bits) - 1 if signed else int(bits)), np.float64)
    if signed:
        table = np.concatenate([-mags[::-1], [0.0], mags])
    else:
        table = np.concatenate([[0.0], mags])
    return table.astype(np.float32)


def _blocks(x: jax.Array, block_size: int) -> jax.Array:
    """``x`` flattened, zero-padded to whole blocks and shaped ``(n_blocks, block_size)``."""
    flat = x.reshape(-1)
    n_blocks = num_blocks(flat.size, block_size)
    flat = jnp.pad(flat, (0, n_blocks * block_size - flat.size))
    return flat.reshape(n_blocks, block_size)


def num_blocks(size: int, block_size: int) -> int:
    """The number of blocks (and float32 scales) an array of ``size`` elements is stored in."""
    return -(-int(size) // int(block_size))


def _magnitude_index(y: jax.Array, magnitude_bits: int, nearest_zero: bool = True) -> jax.Array:
    """Index of the value nearest to ``y`` in ``[0, 1]`` among ``0`` and the magnitudes of a
    ``magnitude_bits`` map, computed in closed form (no search).

    Decade ``e`` holds ``n = 2**(k-1-e)`` values ``10**-e (0.1 + 0.9 j / n)``, ``j = 1..n``; with
    its lower end ``0.1 * 10**-e`` (the top of decade ``e + 1``) they form a uniform grid, so
    rounding on that grid gives the nearest value. The values of decade ``e`` sit at indices
    ``n .. 2n - 1``; below the smallest magnitude the choice is between it and 0, or, with
    ``nearest_zero=False``, every positive ``y`` keeps at least the smallest magnitude.
    """
    k = magnitude_bits
    f32 = jnp.float32
    positive = y > 0
    logs = -jnp.log10(jnp.where(positive, y, jnp.ones_like(y)))
    e = jnp.clip(jnp.floor(logs), 0, k - 1)
    n = jnp.exp2(jnp.asarray(k - 1, f32) - e)
    fraction = y * jnp.exp(e * jnp.asarray(np.log(10.0), f32))
    j = jnp.round((fraction - jnp.asarray(0.1, f32)) / jnp.asarray(0.9, f32) * n)
    index = jnp.clip(n + j - 1, 0, 2.0**k - 1)
    smallest = jnp.asarray(10.0 ** -(k - 1), f32)
    zero = y < smallest / 2 if nearest_zero else jnp.logical_not(positive)
    index = jnp.where(zero, jnp.zeros_like(index), jnp.maximum(index, 1))
    return index.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("bits", "signed"))
def nearest(normed: jax.Array, bits: int, signed: bool) -> jax.Array:
    """uint8 codes: the index in ``dynamic_map(bits, signed=signed)`` of the value nearest each
    element of ``normed`` (in ``[-1, 1]``). In an unsigned map, negative values clamp to 0 and
    positive values below its smallest magnitude round up to it, never to 0: a second moment
    stored as 0 would turn Adam's next step for that element into ``m / eps``-sized jumps."""
    if signed:  # the magnitude's index, mirrored around the centre code (the zero)
        centre = 2 ** (bits - 1) - 1
        index = _magnitude_index(jnp.abs(normed), bits - 1)
        codes = jnp.where(normed < 0, centre - index, centre + index)
    else:  # a positive value never becomes 0 (see `dynamic_map`)
        y = jnp.maximum(normed, jnp.zeros_like(normed))
        codes = _magnitude_index(y, bits, nearest_zero=False)
    return codes.astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames=("bits", "signed", "block_size"))
def quantize(x: jax.Array, bits: int, signed: bool, block_size: int) -> tuple[jax.Array, jax.Array]:
    """Codes (uint8, shaped like ``x``) and per-block scales (float32) of a real array.

    The map is ``dynamic_map(bits, signed=signed)``. Each block of ``block_size`` consecutive
    elements (of ``x`` flattened) is divided by its largest magnitude and every element rounded to
    the nearest map value. An all-zero block gets
    scale 0. A block holding a NaN or an infinity gets scale NaN, so the whole block reads back
    as NaN; values below the map's range (negative values in an unsigned map) are clamped to it.
    """
    blocks = _blocks(x.astype(jnp.float32), block_size)
    absmax = jnp.max(jnp.abs(blocks), axis=1)
    finite = jnp.all(jnp.isfinite(blocks), axis=1)
    ok = jnp.logical_and(finite, absmax > 0)
    normed = blocks / jnp.where(ok, absmax, jnp.ones_like(absmax))[:, None]
    normed = jnp.where(ok[:, None], normed, jnp.zeros_like(normed))
    codes = nearest(normed, bits, signed)
    scale = jnp.where(finite, absmax, jnp.full_like(absmax, jnp.nan))
    return codes.reshape(-1)[: x.size].reshape(x.shape), scale


@functools.partial(jax.jit, static_argnames=("bits", "signed", "block_size", "dtype"))
def dequantize(
    codes: jax.Array, scale: jax.Array, bits: int, signed: bool, block_size: int, dtype: jnp.dtype
) -> jax.Array:
    """The array that :func:`quantize` stored as ``codes`` and ``scale``, in ``dtype``."""
    table = dynamic_map(bits, signed=signed)
    values = jnp.asarray(table)[_blocks(codes, block_size).astype(jnp.int32)] * scale[:, None]
    return values.reshape(-1)[: codes.size].reshape(codes.shape).astype(dtype)


# ----- 4-bit states: codes packed two per byte ----------------------------------------------------
#
# At 4 bits and below (Li, Chen & Zhu 2023) a code fits in a nibble, so two codes share a byte: code
# ``2 k`` in the low four bits of byte ``k``, code ``2 k + 1`` in the high four bits, the last high
# nibble 0 when the array has an odd number of elements. Signed leaves (first moments) keep the
# block-wise dynamic map above. Unsigned leaves (second moments) use the linear map without zero,
# so a positive value never reads back as 0 (the zero-point problem: a zero code would turn
# ``1 / sqrt(v)`` into ``1 / eps``), and leaves of two or more dimensions are normalised rank-1:
# each element by the smallest of the maxima of the slices through it (for a matrix, the smaller of
# its row's and its column's absmax), which fits far tighter than one absmax per block.

PACKED_BITS = 4  # the widest code stored packed two per byte


def linear_map(bits: int = 4) -> np.ndarray:
    """The sorted float32 table of the ``bits``-bit linear map without zero: ``(i + 1) / 2**bits``.

    Example:
      >>> from optix._quantize_maps import linear_map
      >>> [float(v) for v in linear_map(2)]
      [0.25, 0.5, 0.75, 1.0]
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 2 <= bits <= 8:
        raise ValueError(f"`bits` must be an integer from 2 to 8, got {bits!r}")
    return (np.arange(1, 2 ** int(bits) + 1, dtype=np.float64) / 2 ** int(bits)).astype(np.float32)


def packed_map(bits: int, signed: bool) -> np.ndarray:
    """The table that packed (``bits <= 4``) codes index: the signed dynamic map, or for unsigned
    leaves the linear map without zero."""
    return dynamic_map(bits, signed=True) if signed else linear_map(bits)


def pack(codes: jax.Array) -> jax.Array:
    """uint8 codes below 16 (any shape), two per byte: a flat uint8 array of ``ceil(n / 2)``."""
    flat = codes.reshape(-1).astype(jnp.uint8)
    flat = jnp.pad(flat, (0, flat.size % 2))
    pairs = flat.reshape(-1, 2)
    return jnp.bitwise_or(pairs[:, 0], jnp.left_shift(pairs[:, 1], jnp.uint8(4)))


def unpack(packed: jax.Array, size: int) -> jax.Array:
    """The first ``size`` codes (flat uint8) of bytes made by :func:`pack`."""
    low = jnp.bitwise_and(packed, jnp.uint8(15))
    high = jnp.right_shift(packed, jnp.uint8(4))
    return jnp.stack([low, high], axis=-1).reshape(-1)[:size]


def _linear_codes(normed: jax.Array, bits: int) -> jax.Array:
    """Index of the nearest value of ``linear_map(bits)`` (negatives and 0 go to the smallest)."""
    levels = 2**bits
    y = jnp.clip(normed, 0.0, 1.0)
    return jnp.clip(jnp.round(y * levels) - 1, 0, levels - 1).astype(jnp.uint8)


def _rank1_scales(x: jax.Array) -> list[jax.Array]:
    """For each axis of ``x``, the absmax of every slice across the other axes (NaN for a slice
    holding a NaN or an infinity)."""
    out = []
    for axis in range(x.ndim):
        others = tuple(a for a in range(x.ndim) if a != axis)
        absmax = jnp.max(jnp.abs(x), axis=others)
        finite = jnp.all(jnp.isfinite(x), axis=others)
        out.append(jnp.where(finite, absmax, jnp.full_like(absmax, jnp.nan)))
    return out


def _rank1_normaliser(scale: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``min`` over the axes of the per-axis absmax broadcast to ``shape`` (NaN propagates)."""
    offsets = np.cumsum((0,) + tuple(shape))
    parts = [
        scale[offsets[axis] : offsets[axis] + n].reshape(
            tuple(n if a == axis else 1 for a in range(len(shape)))
        )
        for axis, n in enumerate(shape)
    ]
    normaliser = functools.reduce(jnp.minimum, parts)
    return jnp.broadcast_to(normaliser, shape)


def rank1(signed: bool, ndim: int) -> bool:
    """Whether a packed leaf is normalised rank-1 (unsigned leaves of two or more dimensions)."""
    return not signed and ndim >= 2


@functools.partial(jax.jit, static_argnames=("bits", "signed", "block_size"))
def quantize_packed(
    x: jax.Array, bits: int, signed: bool, block_size: int
) -> tuple[jax.Array, jax.Array]:
    """Packed codes (flat uint8, two per byte) and float32 scales of a real array, ``bits <= 4``.

    Signed: block-wise absmax and the signed dynamic map, as :func:`quantize`. Unsigned: the
    linear map without zero (:func:`linear_map`), normalised rank-1 when ``x`` has two or more
    dimensions (scales: the per-axis slice maxima, concatenated, ``sum(x.shape)`` of them) and
    block-wise otherwise. A positive value never reads back as 0; a zero normaliser (an all-zero
    block, row or column) reads back as exact zeros, a non-finite one as NaN.
    """
    if signed:
        codes, scale = quantize(x, bits, True, block_size)
        return pack(codes), scale
    x32 = x.astype(jnp.float32)
    if rank1(signed, x.ndim):
        parts = _rank1_scales(x32)
        scale = jnp.concatenate(parts)
        normaliser = _rank1_normaliser(scale, tuple(x.shape))
        ok = jnp.logical_and(jnp.isfinite(normaliser), normaliser > 0)
        normed = jnp.where(ok, x32 / jnp.where(ok, normaliser, jnp.ones_like(normaliser)), 0.0)
        return pack(_linear_codes(normed, bits)), scale
    blocks = _blocks(x32, block_size)
    absmax = jnp.max(jnp.abs(blocks), axis=1)
    finite = jnp.all(jnp.isfinite(blocks), axis=1)
    ok = jnp.logical_and(finite, absmax > 0)
    normed = blocks / jnp.where(ok, absmax, jnp.ones_like(absmax))[:, None]
    normed = jnp.where(ok[:, None], normed, jnp.zeros_like(normed))
    codes = _linear_codes(normed, bits).reshape(-1)[: x.size]
    return pack(codes), jnp.where(finite, absmax, jnp.full_like(absmax, jnp.nan))


@functools.partial(jax.jit, static_argnames=("bits", "signed", "block_size", "shape", "dtype"))
def dequantize_packed(
    packed: jax.Array,
    scale: jax.Array,
    bits: int,
    signed: bool,
    block_size: int,
    shape: tuple[int, ...],
    dtype: jnp.dtype,
) -> jax.Array:
    """The array of ``shape`` that :func:`quantize_packed` stored as ``packed`` and ``scale``."""
    size = int(np.prod(shape, dtype=np.int64))
    codes = unpack(packed, size).astype(jnp.int32)
    table = jnp.asarray(packed_map(bits, signed))
    if rank1(signed, len(shape)):
        values = table[codes.reshape(shape)] * _rank1_normaliser(scale, shape)
        return values.astype(dtype)
    values = table[_blocks(codes, block_size)] * scale[:, None]
    return values.reshape(-1)[:size].reshape(shape).astype(dtype)
