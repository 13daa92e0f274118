"""Gradient accumulation: one inner step on the mean of ``every_k`` micro-batch gradients."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from optix import _tree, _validate
from optix._base import GradientTransformation, OptState, Updates
from optix._chain import caller, check_transform


class AccumulateState(NamedTuple):
    """State of :func:`accumulate`: the inner state, the gradient sum and the micro-step."""

    inner_state: OptState  # the wrapped transform's state, advanced once per every_k micro-steps
    acc: Updates  # running sum of this cycle's micro-step gradients, in the accumulation dtype
    micro_step: jax.Array  # int32 micro-steps taken in the current cycle, in [0, every_k)


def accumulate(
    inner: GradientTransformation, every_k: int, *, acc_dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Accumulate gradients over ``every_k`` micro-steps, then make one ``inner`` step on their mean.

    .. math::
        a_j = \\sum_{i=1}^{j} g_i, \\qquad
        u_j = \\begin{cases} 0 & j < k \\\\ \\mathrm{inner}(a_k / k) & j = k \\end{cases}

    Micro-steps ``1 .. k-1`` only add the gradient to the buffer and emit zero updates; the inner
    state is left untouched (the inner update runs under ``jax.lax.cond``, so it costs nothing on
    those steps). At micro-step ``k`` the inner transform sees the mean gradient, in the gradient's
    dtype, with that micro-step's ``params`` and extra keyword arguments, and the buffer restarts
    from zero. With equal micro-batches and a mean loss, ``k`` micro-steps give exactly the step of
    one batch ``k`` times larger.

    The buffer is summed in ``acc_dtype``, by default at least float32 (the leaf's dtype when it is
    wider), so bf16 gradients accumulate without rounding each partial sum to bf16. Complex leaves
    keep a complex buffer.

    Args:
      inner: the transform making the real steps (an optimizer, or any chain).
      every_k: number of micro-steps per inner step, an int >= 1 (1 forwards every step).
      acc_dtype: dtype of the accumulation buffer; default: the leaf's compute dtype (at least
        float32). A complex leaf gets the complex counterpart of a real ``acc_dtype``.

    Returns:
      A :class:`GradientTransformation` whose state is an :class:`AccumulateState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.accumulate(optix.sgd(1.0), every_k=2)
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> updates, state = tx.update({"w": jnp.array([1.0, 2.0])}, state)
      >>> updates["w"]  # first micro-step: nothing applied yet
      Array([0., 0.], dtype=float32)
      >>> updates, state = tx.update({"w": jnp.array([3.0, 0.0])}, state)
      >>> updates["w"]  # second: one SGD step on the mean gradient [2, 1]
      Array([-2., -1.], dtype=float32)

    Reference: the large-batch emulation used, for instance, by ``optax.MultiSteps`` and
    Ott et al., "Scaling neural machine translation", WMT 2018.
    """
    check_transform(inner, "`inner`")
    _validate.check_int("every_k", every_k, minimum=1)
    every_k = int(every_k)
    if acc_dtype is not None and not jnp.issubdtype(jnp.dtype(acc_dtype), jnp.inexact):
        raise TypeError(f"`acc_dtype` must be a float or complex dtype, got {acc_dtype!r}")
    call_inner = caller(inner)

    def init(params):
        _validate.check_float_leaves(params, "`accumulate` params")
        acc = jax.tree.map(
            lambda p: jnp.zeros_like(p, dtype=_tree.state_dtype(p.dtype, acc_dtype)), params
        )
        return AccumulateState(inner.init(params), acc, jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra):
        _validate.check_updates(updates, state.acc, "accumulate")
        acc = _tree.map_leaves(lambda g, a: (a + g).astype(a.dtype), updates, state.acc)
        micro_step = state.micro_step + 1
        last = micro_step == every_k

        def step():
            mean = _tree.map_leaves(lambda a, g: (a / every_k).astype(g.dtype), acc, updates)
            out, inner_state = call_inner(mean, state.inner_state, params, extra)
            return out, inner_state, _tree.zeros_like(acc)

        def wait():
            shapes = jax.eval_shape(step)[0]
            return _tree.zeros_shaped_like(shapes), state.inner_state, acc

        out, inner_state, acc = jax.lax.cond(last, step, wait)
        micro_step = jnp.where(last, jnp.zeros_like(micro_step), micro_step)
        return out, AccumulateState(inner_state, acc, micro_step)

    return GradientTransformation(init, update)
