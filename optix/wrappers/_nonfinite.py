"""NaN safety: skip steps whose gradient holds a NaN or an infinity."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optix import _tree
from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._chain import caller
from optix._chain import check_transform
from optix._hyperparams import increment


def all_finite(tree: Any) -> jax.Array:
    """A boolean scalar: whether every element of every leaf is finite (True for no leaves)."""
    finite = jnp.asarray(True)
    for leaf in jax.tree.leaves(tree):
        finite = jnp.logical_and(finite, jnp.all(jnp.isfinite(leaf)))
    return finite


def step_or_hold(
    skip: jax.Array, call: Any, updates: Any, inner_state: OptState, params: Any, extra: dict
) -> tuple[Any, OptState]:
    """The inner transform's ``(updates, state)``, or, where ``skip``, zero updates shaped like
    them and ``inner_state`` exactly as it was (only one branch runs, under ``lax.cond``)."""

    def step():
        return call(updates, inner_state, params, extra)

    def hold():
        return _tree.zeros_shaped_like(jax.eval_shape(step)[0]), inner_state

    return jax.lax.cond(skip, hold, step)


class SkipNonfiniteState(NamedTuple):
    """State of :func:`skip_nonfinite`.

    Attributes:
      inner_state: the wrapped transform's state; untouched by skipped steps.
      skipped: int32 total number of steps skipped so far.
      consecutive: int32 number of skips since the last finite gradient (0 after a finite step).
    """

    inner_state: OptState
    skipped: jax.Array
    consecutive: jax.Array


def skip_nonfinite(
    inner: GradientTransformation, max_consecutive: int | None = None
) -> GradientTransformation:
    r"""Skip every step whose gradient holds a NaN or an infinity, leaving ``inner`` untouched.

    .. math::
        (u_t, s_t) = \begin{cases}
          (0, s_{t-1}) & g_t \text{ not finite and still protecting} \\
          \mathrm{inner}(g_t, s_{t-1}) & \text{otherwise}
        \end{cases}

    A gradient counts as non-finite when any element of any leaf is NaN or +-inf (either part, for
    complex leaves). A skipped step emits zero updates (in the inner updates' dtypes) and keeps the
    inner state exactly as it was, so training continues as if that batch had never been seen. The
    inner update runs under ``jax.lax.cond``: it is computed once, and only on steps it is used.

    The counters are plain fields of the state: ``state.skipped`` (total skips) and
    ``state.consecutive`` (skips since the last finite gradient, reset to 0 by a finite one). Read
    them, for example ``int(state.consecutive)`` after a step, to log skips or to stop a run that
    keeps producing non-finite gradients. Inside a chain, the state is one member of the chain's
    tuple of states.

    Giving up: with ``max_consecutive=N``, once ``N`` consecutive steps have been skipped, the
    protection ENDS: the next non-finite gradient is passed to ``inner`` as it is (which, for most
    optimizers, puts NaN into its state and the params), as ``optax.apply_if_finite`` does. From
    then on the counters stop growing (they keep their values rather than counting further) until a
    finite gradient resets ``consecutive`` to 0, which restores protection. With the default
    ``None``, every non-finite step is skipped, forever; watch ``state.consecutive`` yourself.

    Args:
      inner: the transform to protect (an optimizer, or any chain).
      max_consecutive: ``None`` (always skip), or the int >= 1 number of consecutive skips after
        which non-finite gradients are let through.

    Returns:
      A :class:`GradientTransformation` whose state is a :class:`SkipNonfiniteState`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.skip_nonfinite(optix.sgd(0.1))
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> updates, state = tx.update({"w": jnp.array([1.0, jnp.nan])}, state)
      >>> updates["w"], int(state.skipped), int(state.consecutive)
      (Array([0., 0.], dtype=float32), 1, 1)
      >>> updates, state = tx.update({"w": jnp.array([1.0, 2.0])}, state)
      >>> updates["w"], int(state.skipped), int(state.consecutive)
      (Array([-0.1, -0.2], dtype=float32), 1, 0)
    """
    check_transform(inner, "`inner`")
    if max_consecutive is not None:
        _validate.check_int("max_consecutive", max_consecutive, minimum=1)
        max_consecutive = int(max_consecutive)
    call_inner = caller(inner)

    def init(params):
        return SkipNonfiniteState(
            inner.init(params), jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32)
        )

    def update(updates, state, params=None, **extra):
        _validate.check_float_leaves(updates, "`skip_nonfinite` updates")
        finite = all_finite(updates)
        protecting = (
            jnp.asarray(True) if max_consecutive is None else state.consecutive < max_consecutive
        )
        skip = jnp.logical_and(jnp.logical_not(finite), protecting)

        out, inner_state = step_or_hold(skip, call_inner, updates, state.inner_state, params, extra)
        skipped = jnp.where(skip, increment(state.skipped), state.skipped)
        consecutive = jnp.where(
            finite,
            jnp.zeros_like(state.consecutive),
            jnp.where(skip, increment(state.consecutive), state.consecutive),
        )
        return out, SkipNonfiniteState(inner_state, skipped, consecutive)

    return GradientTransformation(init, update)
