"""The one abstraction: a pure ``(init, update)`` pair, and the smallest transforms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Params = Any
"""A pytree of arrays: the parameters being optimized."""
Updates = Any
"""A pytree with the structure of ``Params``: gradients going in, steps coming out."""
OptState = Any
"""A pytree of arrays: NamedTuples, tuples and dicts of ``jax.Array``."""
Schedule = Callable[[ArrayLike], ArrayLike]
"""A function from the int step count to a hyperparameter value."""
ScalarOrSchedule = float | ArrayLike | Schedule
"""A hyperparameter: a number (or scalar array), or a :data:`Schedule` giving it per step."""


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(NamedTuple):
    """A gradient transformation: a pair of pure functions.

    ``init(params) -> state`` builds the state from the params (it only reads their shapes and
    dtypes, so ``jax.eval_shape(tx.init, params)`` works). ``update(updates, state, params=None,
    **extra) -> (updates, state)`` transforms a gradient-shaped tree; keyword arguments it does not
    use (``value=``, ``value_fn=``, ...) are ignored, so ``chain`` can forward them to every member.

    The tuple layout matches ``optax.GradientTransformation``, so an optix transform works wherever
    an optax one does (``optax.chain``, flax ``TrainState``, ``nnx.Optimizer``), and an optax
    transform can be a member of :func:`optix.chain`.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.scale_by_adam(), optix.scale_lr(1e-3))
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> params = optix.apply_updates(params, updates)
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a transform that keeps none.

    Example:
      >>> import optix
      >>> optix.identity().init({})
      EmptyState()
    """


def identity() -> GradientTransformation:
    """Return updates unchanged.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.identity().update(jnp.ones(2), optix.EmptyState())[0]
      Array([1., 1.], dtype=float32)
    """

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra):
        del params, extra
        return updates, state

    return GradientTransformation(init, update)


def set_to_zero() -> GradientTransformation:
    """Replace every update with zeros of the same shape and dtype (used to freeze params).

    Example:
      >>> import jax.numpy as jnp, optix
      >>> optix.set_to_zero().update(jnp.ones(2), optix.EmptyState())[0]
      Array([0., 0.], dtype=float32)
    """

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra):
        del params, extra
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init, update)


def stateless(fn: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """Turn ``fn(updates, params) -> updates`` into a transform with no state.

    Example:
      >>> import jax, jax.numpy as jnp, optix
      >>> halve = optix.stateless(lambda u, p: jax.tree.map(lambda x: x / 2, u))
      >>> halve.update(jnp.ones(2), halve.init(jnp.ones(2)))[0]
      Array([0.5, 0.5], dtype=float32)
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra):
        del extra
        return fn(updates, params), state

    return GradientTransformation(init, update)
