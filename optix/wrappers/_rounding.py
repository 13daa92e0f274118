r"""Low-precision params that keep learning: stochastic rounding and compensated (Kahan) updates.

With bf16 params, :func:`optix.apply_updates` rounds ``p + u`` to the nearest bf16 value, and an
update smaller than half the spacing of bf16 numbers around ``p`` (``2^{-9} |p|`` or less) is
rounded away: the param never moves. Both wrappers here run an optimizer unchanged and then
choose the update so that ``apply_updates`` lands on a better-rounded param:

- :func:`stochastic_rounding` rounds ``p + u`` up or down at random, with the probabilities that
  make the expected param exactly ``p + u`` (no state but a PRNG key);
- :func:`kahan_summation` keeps, per param, what rounding dropped, and adds it to the next update
  (one compensation buffer shaped like the params).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree
from optix import _validate
from optix._apply import rounded_sum
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Updates
from optix._chain import caller
from optix._chain import check_transform

_UINT = {8: jnp.uint8, 16: jnp.uint16}


def _is_narrow(dtype: DTypeLike) -> bool:
    """Whether ``dtype`` is a real float narrower than float32 (bfloat16, float16)."""
    return jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32


def _flat_pairs(steps: Updates, params: Any) -> tuple[list, list, Any]:
    """The leaves of ``steps`` and the matching leaves of ``params`` (as arrays), and the treedef."""
    _validate.check_matches_params(steps, params)
    leaves, treedef = jax.tree.flatten(steps)
    return leaves, [jnp.asarray(p) for p in treedef.flatten_up_to(params)], treedef


def stochastic_round(x: jax.Array, dtype: DTypeLike, bits: jax.Array) -> jax.Array:
    """``x`` (float32) rounded to ``dtype`` (bfloat16 or float16) up or down at random.

    With ``lo`` and ``hi`` the two ``dtype`` neighbours of ``x`` (``lo`` towards zero), the
    result is ``hi`` when ``bits >> 8 < 2^24 (|x| - |lo|) / (|hi| - |lo|)``, so for uniform
    random ``bits`` (uint32, shaped like ``x``) it is ``hi`` with probability
    ``(|x| - |lo|) / (|hi| - |lo|)`` and its expectation is ``x``. The fraction is exact in
    float32 (Sterbenz: ``lo`` and ``x`` are within a factor 2) and a multiple of ``2^{-24}`` for
    bf16 and float16 normals, so the comparison with 24 random bits is exactly unbiased there.
    The neighbours come from the bit pattern of the nearest ``dtype`` value: a float's magnitude
    bits count its representable values, so ``+-1`` on them steps one value away from or towards
    zero (through subnormals and zero alike).

    Values that are already representable come back unchanged; NaN and +-inf pass through; a
    finite ``x`` beyond the format's range becomes +-inf exactly when round-to-nearest would
    (``|x| >= max + ulp / 2``), and rounds to +-max below that. Below float32's smallest normal
    (``2^{-126}``, where bf16 is subnormal too) the result depends on the backend: XLA on CPU
    flushes float32 subnormals to zero, and those values round towards zero.
    """
    f32 = jnp.float32
    nearest = x.astype(dtype)
    uint = _UINT[jnp.finfo(dtype).bits]
    pattern = jax.lax.bitcast_convert_type(nearest, uint)
    above = jnp.abs(nearest.astype(f32)) > jnp.abs(x)  # nearest is hi; lo is one step down
    one = jnp.asarray(1, uint)
    lo = jnp.where(above, jax.lax.bitcast_convert_type(pattern - one, dtype), nearest)
    hi = jnp.where(above, nearest, jax.lax.bitcast_convert_type(pattern + one, dtype))
    lo_mag, hi_mag = jnp.abs(lo.astype(f32)), jnp.abs(hi.astype(f32))
    frac = (jnp.abs(x) - lo_mag) / (hi_mag - lo_mag)  # in [0, 1); 0 when hi is inf
    up = (bits >> jnp.asarray(8, jnp.uint32)).astype(f32) < frac * f32(2**24)
    rounded = jnp.where(up, hi, lo)
    return jnp.where(jnp.isfinite(nearest), rounded, nearest)


def _delta(p: jax.Array, target: jax.Array, dtype: DTypeLike) -> jax.Array:
    """The update, in ``dtype``, that :func:`optix.apply_updates` turns ``p`` into ``target``
    with: ``target - p``, formed in at least float32 (exact for bf16 or float16 values within a
    factor ``2^{15}`` of each other) and rounded to ``dtype``."""
    wide = _tree.wider(jnp.float32, _tree.wider(p.dtype, dtype))
    return (target.astype(wide) - p.astype(wide)).astype(dtype)


class StochasticRoundingState(NamedTuple):
    """State of :func:`stochastic_rounding`.

    Attributes:
      inner_state: the wrapped optimizer's state.
      key: raw (uint32) PRNG key data; split once per step, so the rounding of a run is a
        function of its seed and its step, and a restored checkpoint continues the same stream.
    """

    inner_state: OptState
    key: jax.Array


def stochastic_rounding(inner: GradientTransformation, seed: Any = 0) -> GradientTransformation:
    r"""Stochastic rounding of low-precision params: ``apply_updates`` lands on ``p + u`` on
    average, so updates below half a bf16 ulp are not lost.

    For every leaf whose param is narrower than float32 (bfloat16, float16), with ``u`` the
    update of ``inner`` and :math:`\lfloor x \rfloor, \lceil x \rceil` the two neighbours of
    :math:`x = p + u` (formed in float32) in the param's format:

    .. math::
        r = \begin{cases}
          \lceil x \rceil & \text{with probability } \dfrac{x - \lfloor x \rfloor}
              {\lceil x \rceil - \lfloor x \rfloor} \\
          \lfloor x \rfloor & \text{otherwise}
        \end{cases}
        \qquad \mathbb{E}[r] = x,

    and the wrapper returns the update :math:`\delta = r - p` (in the update's dtype), so that
    ``apply_updates(p, delta)`` is ``r``. Round-to-nearest would give :math:`r = p` whenever
    :math:`|u|` is below half the spacing at ``p``; here ``p`` moves by one spacing with
    probability :math:`|u| / \text{spacing}`, and a run of small steps adds up to their sum in
    expectation. Leaves with float32 (or wider) params pass through untouched.

    Exactness: ``apply_updates(p, delta) == r`` bit for bit whenever ``r - p`` is representable
    in the update's dtype. With float32 updates that holds unless ``r`` and ``p`` differ in size
    by more than a factor ``2^{15}``; with bf16 updates (bf16 gradients) it holds whenever
    :math:`p/2 \le r \le 2p` (Sterbenz), which covers every update smaller than half the param,
    the regime this wrapper is for. Otherwise (a param near zero jumping far) ``delta`` is the
    rounded ``r - p`` and the param lands within one ulp of ``r``, as plain ``apply_updates``
    would.

    Randomness: the state holds raw PRNG key data, split once per step; leaf ``i`` (in
    ``jax.tree`` order) draws its uint32 bits from ``fold_in(step_key, i)``. The step is a pure
    function of ``(grads, state, params)``: the same seed gives the same run, under ``jit``, after
    an orbax restore, and on replay. NaN and inf pass through; a finite sum beyond the format's
    range overflows to inf exactly when round-to-nearest would.

    Args:
      inner: the optimizer whose updates are rounded (a complete one, ending in
        :func:`optix.scale_lr`, so that ``p + u`` is the new param).
      seed: an int or a PRNG key.

    Returns:
      A transform with state :class:`StochasticRoundingState`; ``update`` needs ``params``. Its
      updates have the inner updates' dtype.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> params = jnp.ones(1000, jnp.bfloat16)
      >>> grads = jnp.ones(1000, jnp.bfloat16)
      >>> plain = optix.sgd(1e-3)  # 1 - 1e-3 rounds back to 1: bf16 spacing below 1 is 2**-8
      >>> updates, _ = plain.update(grads, plain.init(params), params)
      >>> float(optix.apply_updates(params, updates).astype(jnp.float32).mean())
      1.0
      >>> tx = optix.stochastic_rounding(optix.sgd(1e-3), seed=0)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> new = optix.apply_updates(params, updates)  # each 1 or 1 - 2**-8
      >>> round(float(new.astype(jnp.float32).mean()), 3)
      0.999

    References: Gupta, Agrawal, Gopalakrishnan & Narayanan, `Deep learning with limited
    numerical precision <https://arxiv.org/abs/1502.02551>`_, 2015; Zamirai, Zhang, De Sa,
    Aberger & De Sa, `Revisiting BFloat16 training <https://arxiv.org/abs/2010.06192>`_, 2020.
    """
    check_transform(inner, "`inner`")
    key = _validate.raw_key(seed)
    call = caller(inner)

    def init(params):
        _validate.check_float_leaves(params, "`stochastic_rounding` params")
        # a fresh copy: a donating step deletes the state's key, never the factory's
        return StochasticRoundingState(inner.init(params), jnp.copy(key))

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "stochastic_rounding")
        steps, inner_state = call(updates, state.inner_state, params, extra)
        leaves, p_leaves, treedef = _flat_pairs(steps, params)
        new_key, draw = jax.random.split(state.key)

        def leaf(i, u, p):
            if not _is_narrow(p.dtype):
                return u
            bits = jax.random.bits(jax.random.fold_in(draw, i), p.shape, jnp.uint32)
            x = p.astype(jnp.float32) + u.astype(jnp.float32)
            return _delta(p, stochastic_round(x, p.dtype, bits), u.dtype)

        out = [leaf(i, u, p) for i, (u, p) in enumerate(zip(leaves, p_leaves, strict=True))]
        return treedef.unflatten(out), StochasticRoundingState(inner_state, new_key)

    return GradientTransformation(init, update)


class KahanSummationState(NamedTuple):
    """State of :func:`kahan_summation`.

    Attributes:
      inner_state: the wrapped optimizer's state.
      compensation: per param, the part of the updates so far that rounding left out of it (at
        most about half an ulp of the param), in ``compensation_dtype``.
    """

    inner_state: OptState
    compensation: Updates


def kahan_summation(
    inner: GradientTransformation, compensation_dtype: DTypeLike | None = None
) -> GradientTransformation:
    r"""Compensated (Kahan) updates: what rounding drops from a param is carried to the next
    update, so low-precision params follow the exact sum of their updates.

    Per leaf, with ``u`` the update of ``inner``, ``c`` the compensation buffer and
    :math:`\mathrm{rn}` the rounding :func:`optix.apply_updates` does (to the nearest value of
    the param's dtype):

    .. math::
        y = u + c, \qquad r = \mathrm{rn}(p + y), \qquad \delta = r - p, \qquad
        c \leftarrow y - (r - p)

    The wrapper returns :math:`\delta` (in the update's dtype) and ``apply_updates(p, delta)``
    is ``r``. The new compensation is computed from the param ``apply_updates`` will actually
    produce (the wrapper predicts it with the same rounding), so nothing is lost even where
    ``r - p`` is not representable in the update's dtype. ``p + c`` tracks ``p_0 + \sum u``
    to within the compensation buffer's precision: a constant update of a thousandth of an ulp
    moves the param by one ulp every thousand steps, where round-to-nearest never moves it.
    A non-finite compensation (after a NaN or inf update) is reset to zero.

    Memory: one buffer shaped like the params. In float32 (the default for bf16 and float16
    params) it costs 4 bytes per element, twice the bf16 params themselves, and keeps every bit
    a float32 update carries. ``compensation_dtype=jnp.bfloat16`` halves that: the pair
    ``(p, c)`` then holds about 16 significant bits, which is enough for updates down to about
    ``2^{-16}`` of the param. float32 params get a float32 buffer (Kahan summation in float32);
    wrap only the bf16 leaves (``optix.partition``) to save that memory.

    Args:
      inner: the optimizer whose updates are compensated (a complete one, ending in
        :func:`optix.scale_lr`, so that ``p + u`` is the new param).
      compensation_dtype: dtype of the buffer; ``None`` for the param's dtype widened to at
        least float32.

    Returns:
      A transform with state :class:`KahanSummationState`; ``update`` needs ``params``. Its
      updates have the inner updates' dtype.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> def run(tx, steps=100):
      ...     params = jnp.ones(3, jnp.bfloat16)
      ...     state = tx.init(params)
      ...     for _ in range(steps):
      ...         updates, state = tx.update(jnp.ones(3, jnp.bfloat16), state, params)
      ...         params = optix.apply_updates(params, updates)
      ...     return params
      >>> run(optix.sgd(1e-3))  # each step rounds back to 1
      Array([1, 1, 1], dtype=bfloat16)
      >>> run(optix.kahan_summation(optix.sgd(1e-3)))  # 1 - 100 * 1e-3, to bf16
      Array([0.898438, 0.898438, 0.898438], dtype=bfloat16)

    References: Kahan, `Further remarks on reducing truncation errors
    <https://doi.org/10.1145/363707.363723>`_, Communications of the ACM, 1965; Zamirai, Zhang,
    De Sa, Aberger & De Sa, `Revisiting BFloat16 training <https://arxiv.org/abs/2010.06192>`_,
    2020.
    """
    check_transform(inner, "`inner`")
    _tree.check_state_dtype("compensation_dtype", compensation_dtype)
    call = caller(inner)

    def init(params):
        _validate.check_float_leaves(params, "`kahan_summation` params")
        buffer = _tree.moments_like(params, compensation_dtype, name="compensation_dtype")
        return KahanSummationState(inner.init(params), buffer)

    def update(updates, state, params=None, **extra):
        _validate.require_params(params, "kahan_summation")
        steps, inner_state = call(updates, state.inner_state, params, extra)
        leaves, p_leaves, treedef = _flat_pairs(steps, params)
        c_leaves = treedef.flatten_up_to(state.compensation)

        def leaf(u, c, p):
            wide = _tree.compute_dtype(_tree.wider(_tree.wider(p.dtype, u.dtype), c.dtype))
            y = u.astype(wide) + c.astype(wide)
            target = (p.astype(wide) + y).astype(p.dtype)
            delta = _delta(p, target, u.dtype)
            landed = rounded_sum(p, delta)  # what apply_updates makes of it
            left = y - (landed.astype(wide) - p.astype(wide))
            left = jnp.where(jnp.isfinite(left), left, jnp.zeros_like(left))
            return delta, left.astype(c.dtype)

        with jax.numpy_dtype_promotion("standard"):
            pairs = [leaf(*a) for a in zip(leaves, c_leaves, p_leaves, strict=True)]
        out = treedef.unflatten([d for d, _ in pairs])
        compensation = treedef.unflatten([c for _, c in pairs])
        return out, KahanSummationState(inner_state, compensation)

    return GradientTransformation(init, update)
