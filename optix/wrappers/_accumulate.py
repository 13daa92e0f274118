"""Gradient accumulation: one inner step on the mean of ``every_k`` micro-batch gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jax.typing import DTypeLike

from optix import _keypath
from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Updates
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import increment


class AccumulateState(NamedTuple):
    """State of :func:`accumulate`: the inner state, the gradient sum and the two counters."""

    inner_state: OptState  # the wrapped transform's state, advanced once per every_k micro-steps
    acc: Updates  # running sum of this cycle's micro-step gradients, in the accumulation dtype
    micro_step: jax.Array  # int32 micro-steps taken in the current cycle, in [0, k)
    gradient_step: jax.Array  # int32 inner steps made so far (the argument of every_k's schedule)


def _check_every_k(every_k: Any) -> None:
    if not callable(every_k):
        _validate.check_int("every_k", every_k, minimum=1)
        return
    first = np.asarray(every_k(jnp.zeros([], jnp.int32)))
    if first.shape != () or not np.issubdtype(first.dtype, np.number):
        raise ValueError(f"`every_k`'s schedule must return a scalar, got {first!r} at step 0")
    if not first >= 1 or first != np.round(first):
        raise ValueError(f"`every_k`'s schedule must return an integer >= 1, got {first} at step 0")


def accumulate(
    inner: GradientTransformation,
    every_k: int | Callable[[ArrayLike], ArrayLike],
    *,
    acc_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Accumulate gradients over ``k`` micro-steps, then make one ``inner`` step on their mean.

    .. math::
        a_j = \sum_{i=1}^{j} g_i, \qquad
        u_j = \begin{cases} 0 & j < k \\ \mathrm{inner}(a_k / k) & j = k \end{cases}

    Micro-steps ``1 .. k-1`` only add the gradient to the buffer and emit zero updates; the inner
    state is left untouched (the inner update runs under ``jax.lax.cond``, so it costs nothing on
    those steps). At micro-step ``k`` the inner transform sees the mean gradient, in the gradient's
    dtype, with that micro-step's ``params`` and extra keyword arguments, and the buffer restarts
    from zero. With equal micro-batches and a mean loss, ``k`` micro-steps give exactly the step of
    one batch ``k`` times larger.

    The buffer is summed in ``acc_dtype``, by default at least float32 (the leaf's dtype when it is
    wider), so bf16 gradients accumulate without rounding each partial sum to bf16. Complex leaves
    keep a complex buffer.

    ``k`` may change over training, as the batch size sometimes does: give ``every_k`` as a
    schedule of the number of inner steps made so far, ``n -> k`` (``optax.MultiSteps``'s
    ``every_k_schedule``). It is read when a cycle starts and holds for the whole cycle; a value
    below 1 counts as 1. Whether the last call made an inner step (so the params moved, and a
    logger or an evaluation should run) is :func:`accumulate_has_updated`.

    Args:
      inner: the transform making the real steps (an optimizer, or any chain).
      every_k: number of micro-steps per inner step, an int >= 1 (1 forwards every step), or a
        schedule ``n -> k`` of the inner step count ``n`` (integer values; at ``n = 0`` it must
        give at least 1).
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
      >>> bool(optix.accumulate_has_updated(state))
      True
      >>> tx = optix.accumulate(optix.sgd(1.0), every_k=lambda n: 1 + n)  # 1, 2, 3, ... micro-steps

    Reference: the large-batch emulation used, for instance, by ``optax.MultiSteps`` and
    Ott et al., "Scaling neural machine translation", WMT 2018.
    """
    check_transform(inner, "`inner`")
    _check_every_k(every_k)
    schedule = every_k if callable(every_k) else None
    fixed_k = None if callable(every_k) else int(every_k)
    _tree.check_state_dtype("acc_dtype", acc_dtype)
    call_inner = caller(inner)

    def init(params):
        _validate.check_float_leaves(params, "`accumulate` params")
        acc = jax.tree.map(
            lambda p: jnp.zeros_like(p, dtype=_tree.state_dtype(p.dtype, acc_dtype)), params
        )
        zero = jnp.zeros([], jnp.int32)
        return AccumulateState(inner.init(params), acc, zero, jnp.zeros_like(zero))

    def update(updates, state, params=None, **extra):
        _validate.check_updates(updates, state.acc, "accumulate")
        if schedule is None:
            assert fixed_k is not None
            k = jnp.asarray(min(fixed_k, int(jnp.iinfo(jnp.int32).max)), jnp.int32)
        else:
            k = jnp.maximum(jnp.asarray(schedule(state.gradient_step)).astype(jnp.int32), 1)
        acc = _tree.map_leaves(lambda g, a: (a + g).astype(a.dtype), updates, state.acc)
        micro_step = state.micro_step + 1
        last = micro_step >= k

        def step():
            def mean_leaf(a, g):
                return (a / k.astype(_tree.real_dtype(a.dtype))).astype(g.dtype)

            mean = _tree.map_leaves(mean_leaf, acc, updates)
            out, inner_state = call_inner(mean, state.inner_state, params, extra)
            return out, inner_state, _tree.zeros_like(acc)

        def wait():
            shapes = jax.eval_shape(step)[0]
            return _tree.zeros_shaped_like(shapes), state.inner_state, acc

        out, inner_state, acc = jax.lax.cond(last, step, wait)
        micro_step = jnp.where(last, jnp.zeros_like(micro_step), micro_step)
        gradient_step = jnp.where(last, increment(state.gradient_step), state.gradient_step)
        return out, AccumulateState(inner_state, acc, micro_step, gradient_step)

    return GradientTransformation(init, update)


def _find(state: Any) -> list[tuple[str, AccumulateState]]:
    def is_acc(x):
        return isinstance(x, AccumulateState)

    flat = jax.tree_util.tree_flatten_with_path(state, is_leaf=is_acc)[0]
    return [(_keypath.path_str(p) or "<root>", n) for p, n in flat if is_acc(n)]


def accumulate_has_updated(state: OptState) -> jax.Array:
    r"""Whether the call to :func:`accumulate`'s ``update`` that returned ``state`` made an inner
    step (the last micro-step of a cycle), rather than only adding to the buffer.

    .. math:: \text{has\_updated} = (j = 0) \wedge (n > 0)

    with ``j`` the micro-step within the cycle and ``n`` the inner steps made so far (the state's
    ``micro_step`` and ``gradient_step``); ``optax.MultiSteps.has_updated`` computes the same. False
    for the state ``init`` returns. Use it to run logging, evaluation or a checkpoint once per
    real step; under ``jit`` it is a traced bool.

    Args:
      state: an :class:`AccumulateState`, or an optimizer state holding exactly one (in a chain,
        a partition, or a wrapper's ``inner_state``).

    Returns:
      A scalar bool array.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.clip_by_global_norm(1.0), optix.accumulate(optix.adam(1e-3), 2))
      >>> state = tx.init(jnp.zeros(3))
      >>> flags = []
      >>> for _ in range(4):
      ...     _, state = tx.update(jnp.ones(3), state)
      ...     flags.append(bool(optix.accumulate_has_updated(state)))
      >>> flags
      [False, True, False, True]

    Reference: ``optax.MultiSteps.has_updated``, https://optax.readthedocs.io/.
    """
    found = _find(state)
    if len(found) != 1:
        where = ", ".join(p for p, _ in found)
        raise ValueError(
            "`accumulate_has_updated` needs a state holding exactly one `accumulate` state, "
            f"found {len(found)}{': ' + where if where else ''}; pass that AccumulateState itself"
        )
    node = found[0][1]
    return jnp.logical_and(node.micro_step == 0, node.gradient_step > 0)
