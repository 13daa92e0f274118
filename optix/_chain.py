"""Composition: run transforms one after another."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from optix import _validate
from optix._base import GradientTransformation
from optix._base import OptState
from optix._base import Params
from optix._base import Updates
from optix._fusable import is_elementwise
from optix._fusable import mark_elementwise


def accepts_extra(update: Any) -> bool:
    """Whether ``update`` takes ``**kwargs`` (optix transforms and optax's ExtraArgs ones do)."""
    try:
        params = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def check_transform(tx: Any, what: str) -> None:
    """Raise ``TypeError`` unless ``tx`` has callable ``init`` and ``update``."""
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"{what} is a {type(tx).__name__}, not a gradient transformation (an object with "
            "callable `init` and `update`); did you forget to call a factory, as in "
            "`optix.adam(1e-3)`?"
        )


def caller(tx: Any) -> Callable[[Updates, OptState, Params, dict], tuple]:
    """``tx.update`` as ``f(updates, state, params, extra)``; ``extra`` reaches only a transform
    whose ``update`` takes ``**kwargs`` (plain optax transforms do not)."""
    if accepts_extra(tx.update):
        return lambda u, s, p, extra: tx.update(u, s, p, **extra)
    return lambda u, s, p, extra: tx.update(u, s, p)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transforms in sequence; the state is the tuple of their states.

    Extra keyword arguments given to ``update`` (``value=``, ``value_fn=``, ...) reach every member
    that accepts ``**kwargs``; members that do not (plain optax transforms) get none. Any object
    with ``init`` and ``update`` can be a member, optax transforms included.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.chain(optix.clip_by_global_norm(1.0), optix.scale_by_adam(), optix.scale_lr(1e-3))
      >>> state = tx.init({"w": jnp.zeros(3)})
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state)
    """
    for i, tx in enumerate(transforms):
        check_transform(tx, f"chain member #{i}")
    calls = [caller(tx) for tx in transforms]

    def init(params):
        return tuple(tx.init(params) for tx in transforms)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(
                f"chain of {len(transforms)} transforms got a state that is not a tuple of "
                f"{len(transforms)} states; was it built by this chain's init?"
            )
        if params is not None:
            _validate.check_shapes(updates, params, "updates", "params")
        new_state = []
        for call, s in zip(calls, state, strict=True):
            updates, s = call(updates, s, params, extra)
            new_state.append(s)
        return updates, tuple(new_state)

    result = GradientTransformation(init, update)
    if all(is_elementwise(tx) for tx in transforms):
        mark_elementwise(result)  # so `optix.fuse` runs the whole chain on packed buffers
    return result


def named_chain(
    *transforms: tuple[str, GradientTransformation], **named: GradientTransformation
) -> GradientTransformation:
    """Like :func:`chain`, with each member's state under a name: ``{name: state}``.

    Members are given as ``(name, transform)`` pairs, as keyword arguments, or both (pairs first).
    The names become parts of state paths, so ``set_hyperparams(state, **{"head/learning_rate":
    1e-3})`` or ``state_get(state, "adam/mu")`` can address one member.

    Example:
      >>> import jax.numpy as jnp, optix
      >>> tx = optix.named_chain(clip=optix.clip(1.0), sgd=optix.sgd(0.1))
      >>> sorted(tx.init({"w": jnp.zeros(3)}))
      ['clip', 'sgd']
    """
    transforms = (*transforms, *named.items())
    names = [name for name, _ in transforms]
    for name, tx in transforms:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"named_chain names must be non-empty strings without '/', got {name!r}"
            )
        check_transform(tx, f"named_chain member {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain names must be unique, got {names}")
    inner = chain(*(tx for _, tx in transforms))

    def init(params):
        return dict(zip(names, inner.init(params), strict=True))

    def update(updates, state, params=None, **extra):
        if not isinstance(state, dict) or sorted(state) != sorted(names):
            raise ValueError(f"named_chain expected a state dict with keys {names}")
        updates, new = inner.update(updates, tuple(state[n] for n in names), params, **extra)
        return updates, dict(zip(names, new, strict=True))

    result = GradientTransformation(init, update)
    return mark_elementwise(result) if is_elementwise(inner) else result
